# The Kafka relay through a broker outage (invariant 5).
#
# Events are relayed, then the only broker of the mock cluster goes down
# and more transactions commit, followed by WAL that is not relayed.
# During the outage:
#  - relay_status shows an error from after the outage began, messages in
#    flight, and the same worker (the outage stalls the relay, it does not
#    restart it in a loop);
#  - the slot's confirmed position does not move past the first
#    unacknowledged transaction (its commit LSN comes from the eventbus-lsn
#    header once it arrives), although the relay has read beyond it;
#  - with eventbus.relay_max_in_flight = 100, the relay stops reading WAL
#    once about that many messages wait (backpressure).
#  - relay_status.state is 'broker unreachable';
# Once the broker is up again, every committed event arrives (nothing
# lost), re-sent ones carry the same event id, LSN, partition, position and
# value, the confirmed position moves past the last transaction, and new
# events flow again.  Outbox messages: one from a committed prepared
# transaction (before the outage) arrives, one from a rolled-back prepared
# transaction does not, and outbox_backlog counts the message committed
# during the outage until it arrives; the last error is marked resolved.
# Then the broker answers 15 s late: with a message in flight and no
# acknowledgement for 10 s, the state is 'not acknowledging', and 'running'
# again once the acknowledgement came.

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
my $max_in_flight = 100;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:2', '--topic', 'ob:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'outage',
	bootstrap => $bootstrap,
	start => 1,
	conf => "eventbus.relay_max_in_flight = $max_in_flight\nmax_prepared_transactions = 2\n");

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ev', 2);
SELECT eventbus.relay_topic('ev');
CREATE TABLE filler (x text);
});

# $n transactions of 10 events each, tagged with the phase.
sub publish_txns
{
	my ($phase, $n) = @_;
	my $sql = '';
	foreach my $t (1 .. $n)
	{
		$sql .= qq{BEGIN;
SELECT count(*) FROM eventbus.publish_batch('ev',
    ARRAY(SELECT jsonb_build_object('phase', '$phase', 'txn', $t, 'i', i) FROM generate_series(1, 10) i),
    ARRAY(SELECT 'k' || i FROM generate_series(1, 10) i));
COMMIT;
};
	}
	$node->safe_psql($db, $sql);
}

# Phase 1: relayed normally, with two prepared transactions that send an
# outbox message each: one is committed, the other rolled back.
publish_txns('before', 5);
$node->safe_psql(
	$db, q{
BEGIN;
SELECT eventbus.outbox('ob', '{"prepared": "committed"}');
PREPARE TRANSACTION 'p1';
BEGIN;
SELECT eventbus.outbox('ob', '{"prepared": "rolled back"}');
PREPARE TRANSACTION 'p2';
COMMIT PREPARED 'p1';
ROLLBACK PREPARED 'p2';
});
my $msgs = wait_for_kafka($bootstrap, 'ev', 50, 30);
is(scalar(@$msgs), 50, 'before the outage, the events arrive');
is(scalar(@{ wait_for_kafka($bootstrap, 'ob', 1, 30) }),
	1, 'before the outage, the outbox message of the committed prepared transaction arrives');
ok(poll_until(10, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'nothing in flight before the outage');
my $status = relay_status($node, $db);
my $pid = $status->{worker_pid};
my $confirmed_before = slot_confirmed_lsn($node);
note "before the outage: confirmed $confirmed_before, status " . encode_json($status);

# ---------------------------------------------------------------------------
# Outage.

my $down_at = $node->safe_psql($db, 'SELECT now()');
is($mock->command('down 1'), 'ok', 'the broker is down');

# Three transactions, then WAL the relay reads but does not send: a relay
# that confirmed what it read would now move past the three.
publish_txns('outage', 3);
$node->safe_psql($db, q{SELECT eventbus.outbox('ob', '{"outage": 1}')});
$node->safe_psql($db,
	q{INSERT INTO filler SELECT repeat('x', 200) FROM generate_series(1, 5000)});
my $filler_end = $node->safe_psql($db, 'SELECT pg_current_wal_flush_lsn()');

ok( poll_until(
		20,
		sub {
			my $s = relay_status($node, $db);
			return $s->{messages_in_flight} == 31
			  && $node->safe_psql($db,
				"SELECT last_error_at > '$down_at' FROM eventbus.relay_status") eq 't';
		}),
	'relay_status: an error since the outage began, 31 messages in flight');
$status = relay_status($node, $db);
note 'during the outage: ' . encode_json($status);
is($status->{outbox_backlog}, 1,
	'relay_status: outbox_backlog counts the outbox message waiting for Kafka');
ok(defined $status->{last_error} && $status->{last_error} ne '',
	"relay_status: last_error is set (\"" . ($status->{last_error} // '') . '")');

# The slot must stay where it is.  Only time can show that it does not
# move: watch it for a few seconds (the relay saves the slot every 200 ms).
my @confirmed_during;
foreach (1 .. 15)
{
	push @confirmed_during, slot_confirmed_lsn($node);
	usleep(200_000);
}
my ($max_during) = sort { lsn_cmp($b, $a) } @confirmed_during;
note "confirmed during the outage: @confirmed_during[0, -1] (max $max_during), filler ends at $filler_end";
cmp_ok(lsn_cmp($max_during, $confirmed_before), '>=', 0,
	'the confirmed position never went backwards');

# Backpressure: 27 more transactions (270 messages); reading stops once
# $max_in_flight are in flight, at most one transaction (10) beyond.
publish_txns('outage', 27);
ok( poll_until(
		10, sub { relay_status($node, $db)->{messages_in_flight} >= $max_in_flight }),
	"at least $max_in_flight messages in flight");
usleep(1_000_000);    # give a relay without backpressure time to read on
$status = relay_status($node, $db);
cmp_ok($status->{messages_in_flight}, '<=', $max_in_flight + 10,
	"backpressure: no more than relay_max_in_flight + one transaction in flight ($status->{messages_in_flight})");
is($status->{worker_pid}, $pid, 'the same relay worker waits through the outage');
is($status->{state}, 'broker unreachable',
	'relay_status: state broker unreachable during the outage');
is($status->{last_error_resolved_at}, undef, 'relay_status: the error is not resolved yet');
push @confirmed_during, slot_confirmed_lsn($node);
($max_during) = sort { lsn_cmp($b, $a) } @confirmed_during;

# ---------------------------------------------------------------------------
# Recovery.

my $up_at = $node->safe_psql($db, 'SELECT now()');
is($mock->command('up 1'), 'ok', 'the broker is up again');
publish_txns('after', 2);

my $committed = decode_json(
	$node->safe_psql(
		$db, q{
	SELECT json_agg(json_build_object('id', event_id, 'partition', partition,
	    'position', position, 'value', value::text, 'key', key))
	FROM eventbus_data.ev}));
is(scalar(@$committed), 370, '370 events committed');

$msgs = wait_for_kafka($bootstrap, 'ev', scalar(@$committed), 45);
ok(poll_until(20, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'after the outage nothing is left in flight');
$msgs = kafka_read($bootstrap, 'ev') // [];

my %want = map { $_->{id} => $_ } @$committed;
my ($missing, $unknown, $differ, $resent) = compare_delivery(\%want, $msgs);
my @missing = @$missing;
my @unknown = @$unknown;
my @differ = @$differ;
note "after the outage: " . scalar(@$msgs) . " messages, $resent re-sent";
is(scalar(@missing), 0, 'no committed event was lost in the outage')
  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
is(scalar(@unknown), 0, 'nothing but committed events arrived')
  or diag("@unknown[0 .. ($#unknown < 9 ? $#unknown : 9)]");
is(scalar(@differ), 0,
	'every copy of an event carries the same event id, LSN, partition, position and value')
  or diag("@differ[0 .. ($#differ < 9 ? $#differ : 9)]");

# The first and last commit LSNs of the outage transactions.
my @outage_lsns = sort { lsn_cmp($a, $b) }
  map { $_->{headers}{'eventbus-lsn'} }
  grep { $_->{value} =~ /"outage"/ } @$msgs;
my ($first_outage, $last_outage) = @outage_lsns[ 0, -1 ];
note "outage transactions committed at $first_outage .. $last_outage";
ok( defined $first_outage
	  && lsn_cmp($max_during, $first_outage) <= 0,
	"during the outage the slot stayed at or before the first unacknowledged commit ($max_during <= "
	  . ($first_outage // 'none') . ')');
ok( poll_until(
		10,
		sub { lsn_cmp(slot_confirmed_lsn($node), $last_outage // '0/0') > 0 }),
	'after the outage the slot is confirmed past the last outage transaction');

is( join(',', sort map { $_->{value} } @{ kafka_read($bootstrap, 'ob') // [] }),
	'{"outage": 1},{"prepared": "committed"}',
	'outbox: the message committed during the outage and the committed prepared one, nothing else'
);

$status = relay_status($node, $db);
note 'after the outage: ' . encode_json($status);
is($status->{outbox_backlog}, 0, 'relay_status: outbox_backlog 0 after the outage');
ok( $node->safe_psql($db,
		"SELECT last_ack_at > '$up_at' AND state = 'running' FROM eventbus.relay_status") eq 't',
	'relay_status: running, acknowledgements since the broker came back');
is($status->{worker_pid}, $pid, 'still the same relay worker');
is_deeply($status->{backlog}, { ev => 0 }, 'relay_status: backlog 0');
ok( $node->safe_psql($db,
		"SELECT last_error_resolved_at >= last_error_at AND last_error_resolved_at > '$up_at' FROM eventbus.relay_status"
	) eq 't',
	'relay_status: the last error is marked resolved by an acknowledgement after the outage');

# ---------------------------------------------------------------------------
# A broker that is up but does not answer: its responses are delayed by
# 15 s.  With a message in flight and nothing acknowledged for 10 s the
# state says so; once answers come again, it is running.

is($mock->command('rtt 1 15000'), 'ok', 'the broker answers 15 s late');
$node->safe_psql($db, q{SELECT eventbus.publish('ev', '{"phase": "slow"}', key => 'slow')});
ok( poll_until(
		30, sub { relay_status($node, $db)->{state} eq 'not acknowledging' }, 500),
	'relay_status: not acknowledging while a message waits for its acknowledgement');
is($mock->command('rtt 1 0'), 'ok', 'the broker answers at once again');
ok( poll_until(
		45,
		sub {
			my $s = relay_status($node, $db);
			return $s->{state} eq 'running' && $s->{messages_in_flight} == 0;
		},
		500),
	'relay_status: running again once acknowledged');
is(scalar(grep { $_->{value} =~ /"slow"/ } @{ kafka_read($bootstrap, 'ev') // [] }),
	1, 'the delayed event arrived');
is(relay_status($node, $db)->{worker_pid}, $pid, 'still the same relay worker');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC|exited with exit code/),
	'no crash or worker exit in the server log');
$node->stop;
$mock->stop;
note sprintf('081_relay_outage took %.1f s', time() - $t0);
done_testing();
