# Exactly-once: a Kafka transaction that committed while the relay did not
# learn that it did.
#
# The mock cluster answers the next EndTxn late ("endtxn_delay"): the
# brokers have committed the relay's Kafka transaction (two events and an
# outbox message), the relay waits for the answer.  While it waits:
#
#  - relay_backlog() counts the two events, relay_status.outbox_backlog the
#    outbox message, and relay_status.events_relayed counts none of them:
#    delivered in a Kafka transaction that has not committed (as far as the
#    relay knows) is not acknowledged.
#
# Then the relay worker is terminated while it waits.  The next worker
# reads its progress back from Kafka, finds that Kafka has the transaction
# and skips it.  The messages it skips must be counted then: relay_backlog()
# 0, outbox_backlog 0, events_relayed counting each message once.  (Before,
# they were never counted: outbox_backlog stayed at 1 until the server
# restarted, and relay_backlog() counted the events until later ones moved
# the partition's position.)  A later event is counted once, and a
# read_committed consumer sees every event once.

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

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1', '--topic', 'ob:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'unknown_commit',
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

sub logged_tagged
{
	my ($topic, $tag) = @_;
	return scalar grep { $_->{value} =~ /"tag": "$tag"/ }
	  @{ kafka_read($bootstrap, $topic) // [] };
}

sub backlog
{
	return $node->safe_psql($db,
		q{SELECT coalesce(backlog::text, 'NULL') FROM eventbus.relay_backlog() WHERE topic = 'ev'});
}

publish('first', 3);
my $before;
ok( poll_until(
		30,
		sub {
			$before = relay_status($node, $db);
			return logged_tagged('ev', 'first') == 3 && backlog() eq '0' &&
			  $before->{events_relayed} == 3;
		}),
	'the first events are in Kafka and counted, the backlog is 0');
is($before->{outbox_backlog}, 0, 'outbox_backlog is 0');

# ---------------------------------------------------------------------------
# The commit is answered late.

is($mock->command('endtxn_delay 30000'), 'ok', 'the next EndTxn is answered after 30 s');
$node->safe_psql(
	$db, q{BEGIN;
SELECT count(*) FROM eventbus.publish_batch('ev', ARRAY(SELECT jsonb_build_object('tag', 'second', 'i', i) FROM generate_series(1, 2) i));
SELECT eventbus.outbox('ob', '{"tag": "second"}');
COMMIT;});
ok( poll_until(
		20,
		sub {
			logged_tagged('ev', 'second') == 2 && logged_tagged('ob', 'second') == 1;
		}),
	'the events and the outbox message were delivered');
my $waiting = relay_status($node, $db);
is(backlog(), '2', 'while the commit is not answered, relay_backlog() counts the events');
is($waiting->{outbox_backlog}, 1, '... outbox_backlog the outbox message');
is($waiting->{events_relayed}, $before->{events_relayed},
	'... and events_relayed none of them')
  or diag(encode_json($before) . "\n" . encode_json($waiting));

# ---------------------------------------------------------------------------
# The worker stops before the answer comes; the next one skips what Kafka has.

my $pid = $waiting->{worker_pid};
ok(defined $pid, 'the relay worker runs');
$node->safe_psql($db, "SELECT pg_terminate_backend($pid)");
ok( poll_until(
		90,
		sub {
			my $s = relay_status($node, $db);
			return ($s->{worker_pid} // $pid) != $pid && $s->{state} eq 'running';
		}),
	'a new relay worker runs');
my $status;
ok( poll_until(
		30,
		sub {
			$status = relay_status($node, $db);
			return backlog() eq '0' && $status->{outbox_backlog} == 0;
		}),
	'the skipped messages count as acknowledged: relay_backlog() and outbox_backlog are 0'
) or diag('backlog ' . backlog() . ', status ' . encode_json($status));
is($status->{events_relayed}, $before->{events_relayed} + 3,
	'events_relayed counts the three messages once');

publish('third', 1);
ok( poll_until(
		30,
		sub {
			$status = relay_status($node, $db);
			return logged_tagged('ev', 'third') == 1 && backlog() eq '0' &&
			  $status->{events_relayed} >= $before->{events_relayed} + 4;
		}),
	'a later event is relayed');
usleep(500_000);
is(relay_status($node, $db)->{events_relayed},
	$before->{events_relayed} + 4, 'events_relayed counts it once');
is(relay_status($node, $db)->{outbox_backlog}, 0, 'outbox_backlog is still 0');
ok( $node->log_contains(qr/skipped [1-9]\d* transactions that Kafka already had/),
	'the new worker skipped the transaction Kafka has');

my %seen;
$seen{ $_->{value} }++
  for @{ committed_view($bootstrap, kafka_read($bootstrap, 'ev') // []) };
is(scalar(grep { $_ > 1 } values %seen), 0,
	'a read_committed consumer sees each event once')
  or diag(encode_json(\%seen));
is(scalar(keys %seen), 6, '... and all six');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('144_relay_exactly_once_unknown_commit took %.1f s', time() - $t0);
done_testing();
