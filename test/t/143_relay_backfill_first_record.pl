# Progress records of a backfill under exactly-once, at a session's start.
#
#  - A relay made together with its topic: the extension, a topic of 500
#    events and relay_topic(..., 'earliest') in one transaction, so the
#    relay's slot is created after all of it.  As in TAP 142, the state a
#    stop between a batch's Kafka commit and its save leaves is made by
#    hand (the relay stopped, the backfill's row back at the batch's first
#    position): at its next start the relay finds the batch in the record
#    and saves it instead of sending it again.
#  - A session whose first Kafka transactions carry only backfill batches,
#    before it decoded any transaction of WAL (the relay stopped, the
#    backfill back at its start, the slot advanced to the end of WAL): its
#    progress records must not say less than Kafka had.  They said 0/0;
#    the record read back at the next start is the one with the highest
#    commit LSN, so a stop between such a batch's commit and its save had
#    the batch sent again.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'first:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('backfill_first', bootstrap => $bootstrap,
	conf => "eventbus.relay_delivery = 'exactly_once'\n");
$node->start;
my $db = 'postgres';

$node->safe_psql($db, q{
BEGIN;
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('first', 1);
SELECT count(*) FROM eventbus.publish_batch('first',
  ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 500) i));
SELECT eventbus.relay_topic('first', start_at => 'earliest');
COMMIT;
});
ok(wait_relay_running($node, $db, 60), 'the relay runs');
ok(backfill_done($node, $db, 'first', 60), 'the backfill is done');

my $progress = kafka_read($bootstrap, '__eventbus_relay_progress');
my ($record) = grep { ref $_->{backfill} eq 'ARRAY' } map { decode_json($_->{value}) } @$progress;
ok(defined $record, 'a progress record names the backfill batch')
  or diag(join("\n", map { $_->{value} } @$progress));
note 'its commit LSN: ' . ($record->{commit_lsn} // '?');
my $topic_id = $node->safe_psql($db, q{SELECT topic_id FROM eventbus.topic WHERE topic = 'first'});
is($record->{backfill}[0] // -1, $topic_id, '... of topic "first"');

# the state a stop between the Kafka commit and the save leaves
ok(relay_stop($node, $db), 'the relay stopped');
$node->safe_psql($db, qq{
UPDATE eventbus.relay_backfill_progress SET next_position = $record->{backfill}[3], completed_at = NULL
WHERE topic_id = $topic_id});

my $log_offset = -s $node->logfile;
ok(relay_start($node, $db, $bootstrap), 'the relay runs again');
ok(backfill_done($node, $db, 'first', 30), 'the backfill is done again');
ok($node->log_contains('Kafka has the backfill batch of positions', $log_offset),
	'the relay found the batch in the first progress record');

$node->safe_psql($db, q{SELECT count(*) FROM eventbus.publish_batch('first',
  ARRAY(SELECT jsonb_build_object('after', i) FROM generate_series(1, 10) i))});
my ($missing, $dup) = kafka_missing_repeated($node, $db, $bootstrap, 'first');
is(scalar(@$missing), 0, 'a read_committed reader misses no event');
is(scalar(@$dup), 0, 'a read_committed reader sees no event twice')
  or diag('duplicates: ' . scalar(@$dup));
# The relay saw that batch's Kafka commit and counted it then: finding it in
# the record again must not count it twice (TAP 144 has a commit it did
# not see answered, counted when found).
ok(poll_until(30, sub { relay_status($node, $db)->{events_relayed} >= 510 }),
	'events_relayed counts the 500 events and the 10 after');
usleep(500_000);
is(relay_status($node, $db)->{events_relayed}, 510, '... each once');

# ---------------------------------------------------------------------------
# A new session whose first Kafka transaction carries only a backfill
# batch, before it decoded anything: its progress record must not say less
# than Kafka had (it said 0/0, and the record read back at the next start is
# the one with the highest commit LSN, so the batch it named was lost).
# Made so: the relay stopped, the backfill goes back to its start, and the
# slot is advanced to the end of WAL, so that the next session has nothing
# to decode before its first batch.

my $before = kafka_read($bootstrap, '__eventbus_relay_progress');
my $highest = '0/0';
foreach my $p (@$before)
{
	my $lsn = decode_json($p->{value})->{commit_lsn};
	$highest = $lsn if lsn_cmp($lsn, $highest) > 0;
}
$node->safe_psql($db, q{ALTER SYSTEM SET eventbus.relay_backfill_batch = 100});
ok(relay_stop($node, $db), 'the relay stopped again');
$node->safe_psql($db, qq{
UPDATE eventbus.relay_backfill_progress SET next_position = 0, completed_at = NULL
WHERE topic_id = $topic_id});
$node->safe_psql($db, q{SELECT pg_replication_slot_advance(slot_name, pg_current_wal_lsn())
  FROM pg_replication_slots WHERE slot_name LIKE 'pg_eventbus_relay_%'});
ok(relay_start($node, $db, $bootstrap), 'the relay runs once more');
ok(backfill_done($node, $db, 'first', 60), 'the backfill from the start is done');
my $after = kafka_read($bootstrap, '__eventbus_relay_progress');
my @new = map { decode_json($_->{value}) } @{$after}[ scalar(@$before) .. $#$after ];
my @lower = grep { lsn_cmp($_->{commit_lsn}, $highest) < 0 } @new;
ok(@new >= 5, 'the new session wrote a progress record per batch (' . scalar(@new) . ')');
is(scalar(@lower), 0, 'none of its progress records says less than Kafka had')
  or diag(join(', ', map { "$_->{commit_lsn}" } @lower));

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
done_testing();
