# A backfill under exactly-once: a batch whose Kafka transaction committed
# is not sent again when the relay stopped before it saved the batch's
# progress (issue 11).
#
# The progress record of the Kafka transaction that carries a backfill
# batch names the batch ("backfill": [topic id, partition, started_at,
# first position, next position]).  Stopping the relay in the few
# milliseconds between that commit and the save cannot be timed from a
# test, so the test makes the state the stop would leave: with the relay
# stopped, the backfill's row goes back to the batch's first position, as
# if the save had not happened.  At its next start the relay reads the
# record back and saves the batch instead of sending it again: a
# read_committed reader sees every event once.
#
# A batch is also cut at 64 MB of values and keys (one Kafka transaction
# must commit within transaction.timeout.ms): 80 events of 900 kB go in
# two batches, the first as long as 64 MB needs.
#
# A batch's saved progress is on disk before the next batch is sent, even
# when the server runs with synchronous_commit = off: Kafka's progress
# record names only the last batch, so a save lost in a crash would have
# every batch after the last flushed one sent again.  The walwriter is
# made to flush rarely (wal_writer_delay = 10 s), the backfill runs in
# batches of 100, and the server stops immediately once it is done.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'be:1', '--topic', 'bb:1', '--topic', 'bs:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('backfill_eos', bootstrap => $bootstrap, start => 1,
	conf => "eventbus.relay_delivery = 'exactly_once'\neventbus.relay_backfill_batch = 1000\n");
my $db = 'postgres';

# Checks that a read_committed reader of Kafka topic $topic (default be,
# the local topic of the same name) sees exactly the local events, each
# once.
sub exactly_once
{
	my ($what, $topic) = @_;
	my ($missing, $dup) = kafka_missing_repeated($node, $db, $bootstrap, $topic // 'be');
	is(scalar(@$missing), 0, "$what: none missing") or diag('missing: ' . scalar(@$missing));
	is(scalar(@$dup), 0, "$what: no duplicate") or diag('duplicates: ' . scalar(@$dup));
}

# 1,500 retained events: two batches (relay_backfill_batch = 1000)
$node->safe_psql($db, q{
SELECT eventbus.create_topic('be', 1);
SELECT count(*) FROM eventbus.publish_batch('be', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 1500) i));
SELECT eventbus.relay_topic('be', start_at => 'earliest');
});
ok(backfill_done($node, $db, 'be', 60),
	'the backfill is done');
exactly_once('backfill under exactly-once');

# the last progress record carries the last batch
my $progress = kafka_read($bootstrap, '__eventbus_relay_progress');
my $last = decode_json($progress->[-1]{value});
my $topic_id = $node->safe_psql($db, q{SELECT topic_id FROM eventbus.topic WHERE topic = 'be'});
ok(ref $last->{backfill} eq 'ARRAY' && $last->{backfill}[0] == $topic_id && $last->{backfill}[4] == 1500,
	'the last progress record names the last batch')
  or diag($progress->[-1]{value});
my $first = $last->{backfill}[3];
is($first, 1000, 'the last batch begins after the first 1,000 events (relay_backfill_batch)');

# the state a stop between the Kafka commit and the save leaves
ok(relay_stop($node, $db), 'the relay stopped');
$node->safe_psql($db, qq{
UPDATE eventbus.relay_backfill_progress SET next_position = $first, completed_at = NULL
WHERE topic_id = $topic_id});
is($node->safe_psql($db, q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'be'}), 'sending',
	"the backfill's row says the last batch is still to be sent");

my $log_offset = -s $node->logfile;
ok(relay_start($node, $db, $bootstrap), 'the relay runs again');
ok(backfill_done($node, $db, 'be', 30),
	'the backfill is done again');
ok($node->log_contains('Kafka has the backfill batch of positions', $log_offset),
	'the relay found the batch in its progress record');
$node->safe_psql($db, q{SELECT count(*) FROM eventbus.publish_batch('be', ARRAY(SELECT jsonb_build_object('after', i) FROM generate_series(1, 10) i))});
exactly_once('after the restart');

# A batch is cut once its values reach 64 MB (EB_BACKFILL_BATCH_BYTES),
# long before relay_backfill_batch (1,000) events.  The values compress to
# almost nothing in the table; as sent each is 900 kB of JSON.
$node->safe_psql($db, q{SELECT eventbus.create_topic('bb', 1)});
for my $i (1 .. 8)
{
	$node->safe_psql($db, q{SELECT count(*) FROM eventbus.publish_batch('bb',
		ARRAY(SELECT jsonb_build_object('p', repeat('x', 900000)) FROM generate_series(1, 10)))});
}
my $size = $node->safe_psql($db, q{SELECT octet_length(value::text) FROM eventbus_data.bb LIMIT 1});
my $per_batch = int((64 * 1024 * 1024 + $size - 1) / $size);
$node->safe_psql($db, q{SELECT eventbus.relay_topic('bb', start_at => 'earliest')});
ok(backfill_done($node, $db, 'bb', 120),
	'the backfill of 72 MB is done');
my $bb_id = $node->safe_psql($db, q{SELECT topic_id FROM eventbus.topic WHERE topic = 'bb'});
my %batches;
for my $rec (@{ kafka_read($bootstrap, '__eventbus_relay_progress') })
{
	my $v = decode_json($rec->{value});
	next unless ref $v->{backfill} eq 'ARRAY' && $v->{backfill}[0] == $bb_id;
	$batches{"$v->{backfill}[3]-$v->{backfill}[4]"} = 1;
}
is(join(',', sort { (split /-/, $a)[0] <=> (split /-/, $b)[0] } keys %batches),
	"0-$per_batch,$per_batch-80",
	"two batches, the first of $per_batch events of $size bytes (64 MB)");

# saves on disk whatever synchronous_commit says
$node->safe_psql($db, q{
ALTER SYSTEM SET synchronous_commit = off;
ALTER SYSTEM SET wal_writer_delay = '10s';
ALTER SYSTEM SET eventbus.relay_backfill_batch = 100;
SELECT pg_reload_conf();
});
$node->safe_psql($db, q{
SET synchronous_commit = on;
SELECT eventbus.create_topic('bs', 1);
SELECT count(*) FROM eventbus.publish_batch('bs', ARRAY(SELECT jsonb_build_object('s', i) FROM generate_series(1, 2000) i));
SELECT eventbus.relay_topic('bs', start_at => 'earliest');
});
ok(backfill_done($node, $db, 'bs', 120),
	'the backfill in batches of 100 is done');
my $bs_id = $node->safe_psql($db, q{SELECT topic_id FROM eventbus.topic WHERE topic = 'bs'});
my %bs_batches;
for my $rec (@{ kafka_read($bootstrap, '__eventbus_relay_progress') })
{
	my $v = decode_json($rec->{value});
	$bs_batches{ $v->{backfill}[3] } = 1
	  if ref $v->{backfill} eq 'ARRAY' && $v->{backfill}[0] == $bs_id;
}
cmp_ok(scalar(keys %bs_batches), '>=', 10, 'the backfill went in batches of at most 100')
  or diag(join(',', sort { $a <=> $b } keys %bs_batches));
$node->stop('immediate');
$node->start;
is($node->safe_psql($db, q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'bs'}), 'done',
	'after an immediate stop the backfill is still done (its saves were on disk)');
ok(wait_relay_running($node, $db, 60), 'the relay runs after the immediate stop');
$node->safe_psql($db, q{SET synchronous_commit = on; SELECT eventbus.publish('bs', '{"after": "crash"}')});
exactly_once('backfill saved under synchronous_commit = off, then an immediate stop', 'bs');

$node->stop;
$mock->stop;
done_testing();
