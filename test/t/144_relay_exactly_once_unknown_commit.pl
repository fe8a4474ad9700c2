# Exactly-once: a Kafka transaction that committed while the relay did not
# learn that it did.
#
# The mock cluster answers the next EndTxn late ("endtxn_delay"): the
# brokers have committed the relay's Kafka transaction, the relay waits for
# the answer.  While it waits, what the transaction carries is delivered
# but not acknowledged: relay_backlog() and relay_status.outbox_backlog
# count it, relay_status.events_relayed does not.  Then the relay worker is
# terminated while it waits.  The next worker reads its progress back from
# Kafka, finds that Kafka has the transaction and does not send it again;
# what it carried must be counted then, once (before, it never was:
# outbox_backlog stayed at 1 until the server restarted, and
# relay_backlog() counted the events until later ones moved the partition's
# position).  Three rounds:
#
#  1. two events and an outbox message, in one PostgreSQL transaction,
#     which the next worker skips;
#  2. an event and one too large for Kafka under on_error => 'dead_letter':
#     the skipped transaction counts the event, not the dead letter (as a
#     commit that was answered does; the dead letter's row tells it);
#  3. a backfill batch (start_at => 'last_acknowledged'), which the next
#     worker finds in the progress record and saves without sending it.
#
# Then a later event is counted once, and a read_committed consumer sees
# every event once.

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

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1', '--topic', 'ob:1',
	'--topic', 'wide:1', '--topic', 'bf:1');
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
SELECT eventbus.create_topic('wide', 1);
SELECT eventbus.relay_topic('wide', on_error => 'dead_letter');
SELECT eventbus.create_topic('bf', 1);
SELECT eventbus.relay_topic('bf');
});

sub publish
{
	my ($topic, $tag, $n) = @_;
	$node->safe_psql($db,
		"SELECT count(*) FROM eventbus.publish_batch('$topic', ARRAY(SELECT jsonb_build_object('tag', '$tag', 'i', i) FROM generate_series(1, $n) i))"
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
	my ($topic) = @_;
	return $node->safe_psql($db,
		"SELECT coalesce(backlog::text, 'NULL') FROM eventbus.relay_backlog() WHERE topic = '$topic'");
}

sub dead_letters
{
	return $node->safe_psql($db, 'SELECT count(*) FROM eventbus.relay_dead_letter');
}

# relay_status once events_relayed is $n and has stayed so for half a second
# (the worker publishes its counts every 100 ms); undef if it does not get
# there within $seconds.
sub status_at
{
	my ($n, $seconds) = @_;
	my $s;
	return undef
	  unless poll_until($seconds // 30,
		sub { $s = relay_status($node, $db); $s->{events_relayed} >= $n });
	usleep(500_000);
	$s = relay_status($node, $db);
	return $s;
}

# Terminates the relay worker (which waits for the late answer) and waits
# for the next one to run.
sub terminate_relay
{
	my ($round) = @_;
	my $pid = relay_status($node, $db)->{worker_pid};
	ok(defined $pid, "round $round: the relay worker runs");
	$node->safe_psql($db, "SELECT pg_terminate_backend($pid)");
	ok( poll_until(
			90,
			sub {
				my $s = relay_status($node, $db);
				return ($s->{worker_pid} // $pid) != $pid && $s->{state} eq 'running';
			}),
		"round $round: a new relay worker runs");
}

publish('ev', 'first', 3);
ok(poll_until(30, sub { logged_tagged('ev', 'first') == 3 && backlog('ev') eq '0' }),
	'the first events are in Kafka, the backlog is 0');
my $before = status_at(3);
is($before->{events_relayed}, 3, 'they are counted');
is($before->{outbox_backlog}, 0, 'outbox_backlog is 0');

# ---------------------------------------------------------------------------
# 1. Two events and an outbox message.

is($mock->command('endtxn_delay 30000'), 'ok', 'round 1: the next EndTxn is answered after 30 s');
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
	'round 1: the events and the outbox message were delivered');
my $waiting = relay_status($node, $db);
is(backlog('ev'), '2', 'while the commit is not answered, relay_backlog() counts the events');
is($waiting->{outbox_backlog}, 1, '... outbox_backlog the outbox message');
is($waiting->{events_relayed}, 3, '... and events_relayed none of them')
  or diag(encode_json($waiting));

terminate_relay(1);
my $status;
ok( poll_until(
		30,
		sub {
			$status = relay_status($node, $db);
			return backlog('ev') eq '0' && $status->{outbox_backlog} == 0;
		}),
	'round 1: the skipped messages count as acknowledged: relay_backlog() and outbox_backlog are 0'
) or diag('backlog ' . backlog('ev') . ', status ' . encode_json($status));
is(status_at(6)->{events_relayed}, 6, 'round 1: events_relayed counts the three messages once');

# ---------------------------------------------------------------------------
# 2. An event and a dead letter (400,000 bytes stored, 2.4 MB as JSON
# text: larger than the producer's message.max.bytes).

my $big = q{to_jsonb(repeat(chr(1), 400000))};
my $before_wide = status_at(6);
is($mock->command('endtxn_delay 30000'), 'ok', 'round 2: the next EndTxn is answered after 30 s');
$node->safe_psql(
	$db, qq{SET eventbus.max_event_size = '8MB';
BEGIN;
SELECT eventbus.publish('wide', '{"tag": "small"}');
SELECT eventbus.publish('wide', $big);
COMMIT;});
ok(poll_until(60, sub { dead_letters() eq '1' && logged_tagged('wide', 'small') == 1 }),
	'round 2: the large event is dead-lettered, the small one delivered');
is(relay_status($node, $db)->{events_relayed}, 6, '... and not counted yet');
terminate_relay(2);
ok(poll_until(30, sub { backlog('wide') eq '0' }), 'round 2: relay_backlog() is 0');
my $after_wide = status_at(7);
is($after_wide->{events_relayed}, 7,
	'round 2: events_relayed counts the small event, not the dead letter')
  or diag(encode_json($after_wide));
cmp_ok($after_wide->{bytes_relayed} - $before_wide->{bytes_relayed},
	'<', 1000, '... and bytes_relayed not its 2.4 MB');
is(dead_letters(), '1', 'round 2: one dead letter');
is($node->safe_psql($db, q{SELECT relayed FROM eventbus.topic_stats WHERE topic = 'wide'}),
	'1', 'round 2: topic_stats.relayed counts the small event only');

# ---------------------------------------------------------------------------
# 3. A backfill batch: five events published while the topic was not
# relayed, sent from the topic's table.

publish('bf', 'bf-first', 1);
ok(poll_until(30, sub { backlog('bf') eq '0' }), 'round 3: the first event of bf is relayed');
status_at(8);
$node->safe_psql($db, q{SELECT eventbus.stop_relay('bf')});
publish('bf', 'gap', 5);
is($mock->command('endtxn_delay 30000'), 'ok', 'round 3: the next EndTxn is answered after 30 s');
$node->safe_psql($db,
	q{SELECT eventbus.relay_topic('bf', start_at => 'last_acknowledged')});
ok(poll_until(30, sub { logged_tagged('bf', 'gap') == 5 }),
	'round 3: the backfill batch was delivered');
is(backlog('bf'), '5', 'while the commit is not answered, relay_backlog() counts the batch');
my $log_offset = -s $node->logfile;
terminate_relay(3);
ok(backfill_done($node, $db, 'bf', 60), 'round 3: the backfill is done');
ok($node->log_contains('Kafka has the backfill batch of positions', $log_offset),
	'round 3: the new worker found the batch in the progress record');
ok(poll_until(30, sub { backlog('bf') eq '0' }), 'round 3: relay_backlog() is 0');
is(status_at(13)->{events_relayed}, 13, 'round 3: events_relayed counts the batch once');
is(logged_tagged('bf', 'gap'), 5, 'round 3: the batch was not sent again');

# ---------------------------------------------------------------------------
# Afterwards.

publish('ev', 'third', 1);
ok( poll_until(
		30,
		sub {
			return logged_tagged('ev', 'third') == 1 && backlog('ev') eq '0';
		}),
	'a later event is relayed');
is(status_at(14)->{events_relayed}, 14, 'events_relayed counts it once');
is(relay_status($node, $db)->{outbox_backlog}, 0, 'outbox_backlog is still 0');
ok( $node->log_contains(qr/skipped [1-9]\d* transactions that Kafka already had/),
	'the new workers skipped the transactions Kafka has');

foreach my $topic ('ev', 'bf')
{
	my %seen;
	$seen{ $_->{value} }++
	  for @{ committed_view($bootstrap, kafka_read($bootstrap, $topic) // []) };
	is(scalar(grep { $_ > 1 } values %seen), 0,
		"a read_committed consumer of $topic sees each event once")
	  or diag(encode_json(\%seen));
	is(scalar(keys %seen), 6, '... and all six');
}

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('144_relay_exactly_once_unknown_commit took %.1f s', time() - $t0);
done_testing();
