# Under exactly-once, "acknowledged by Kafka" means the Kafka transaction
# that carried an event committed: a delivery report alone does not count.
#
# The mock cluster fails the next EndTxn requests ("endtxn_errors"): the
# relay's Kafka transaction is delivered message by message and then cannot
# commit, again at every attempt.  Once EndTxn works again the backlog is 0
# again, relay_status.events_relayed counts every event once, and every
# event is in Kafka once.
#
# The mock does not hide aborted transactions from consumers, and the
# relay, reading its progress back from the mock, takes the record of the
# transaction whose commit failed for a committed one (see
# RelayTest::committed_view): for the relay, the commit's outcome was
# unknown and the broker had committed, which TAP 144 tests on purpose.  So
# what relay_backlog() and relay_status say while the commit is not
# answered is checked there (the mock answers EndTxn late), not here: here
# the next session counts the transaction as soon as it reads the record.
# What a read_committed consumer of a real broker sees of such a
# transaction is not checked here either.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RelayTest;

my $t0 = time();
my $db = 'postgres';

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'eosack',
	bootstrap => $bootstrap,
	start => 1,
	conf => "eventbus.relay_delivery = 'exactly_once'\n");

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ev', 1);
SELECT eventbus.relay_topic('ev');
});

sub publish
{
	my ($tag, $n) = @_;
	$node->safe_psql($db,
		"SELECT count(*) FROM eventbus.publish_batch('ev', ARRAY(SELECT jsonb_build_object('tag', '$tag', 'i', i) FROM generate_series(1, $n) i))"
	);
}

sub committed_tagged
{
	my ($tag) = @_;
	my $msgs = kafka_read($bootstrap, 'ev') // [];
	return scalar grep { $_->{value} =~ /"tag": "$tag"/ }
	  @{ committed_view($bootstrap, $msgs) };
}

sub logged_tagged
{
	my ($tag) = @_;
	return scalar grep { $_->{value} =~ /"tag": "$tag"/ }
	  @{ kafka_read($bootstrap, 'ev') // [] };
}

sub backlog
{
	return $node->safe_psql($db,
		q{SELECT coalesce(backlog::text, 'NULL') FROM eventbus.relay_backlog() WHERE topic = 'ev'});
}

publish('first', 3);
ok(poll_until(30, sub { committed_tagged('first') == 3 }),
	'the first events are committed in Kafka');
ok(poll_until(30, sub { backlog() eq '0' }), 'the backlog is 0');
ok(poll_until(10, sub { relay_status($node, $db)->{events_relayed} == 3 }),
	'relay_status.events_relayed counts them');
my $relayed_before = 3;

# ---------------------------------------------------------------------------
# Kafka transactions that cannot commit.

is($mock->command('endtxn_errors 100 INVALID_TXN_STATE'),
	'ok', 'the next EndTxn requests fail');
publish('second', 2);
my $status;
ok( poll_until(
		60,
		sub {
			$status = relay_status($node, $db);
			return logged_tagged('second') >= 2
			  && ($status->{last_error} // '') =~ /could not commit a Kafka transaction/;
		}),
	'the events were delivered in a Kafka transaction that did not commit')
  or diag(encode_json($status));

# ---------------------------------------------------------------------------
# EndTxn works again.

is($mock->command('endtxn_errors 0'), 'ok', 'EndTxn requests succeed again');
ok(poll_until(90, sub { committed_tagged('second') >= 2 }),
	'the events are committed in Kafka');
publish('third', 1);
ok(poll_until(30, sub { committed_tagged('third') == 1 }),
	'later events are committed in Kafka');
ok(poll_until(30, sub { backlog() eq '0' }), 'the backlog is 0 again');
ok( poll_until(
		10,
		sub {
			relay_status($node, $db)->{events_relayed} >= $relayed_before + 3;
		}),
	'relay_status.events_relayed counts the events');
usleep(500_000);
is(relay_status($node, $db)->{events_relayed},
	$relayed_before + 3, '... each once');

my $view = committed_view($bootstrap, kafka_read($bootstrap, 'ev') // []);
my %seen;
$seen{ $_->{value} }++ for @$view;
is(scalar(grep { $_ > 1 } values %seen), 0,
	'a read_committed consumer sees each event once')
  or diag(encode_json(\%seen));
is(scalar(keys %seen), 6, '... and all six');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('134_relay_exactly_once_acknowledged took %.1f s', time() - $t0);
done_testing();
