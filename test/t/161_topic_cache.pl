# Backends' topic caches see the changes of the topics they use, and only
# of their own database (catalog.c: a version per database for the topic
# list, a version per topic for its segments, both in shared memory).
#
#  - Topic DDL in the same database, in the middle of a transaction of
#    another session that has the topic cached: alter_topic() adds
#    partitions; the other session, still in its transaction, publishes to
#    a new partition at once.
#  - Rotation: maintenance in one session rotates a topic's segment; a
#    session that has the topic cached publishes into the new current
#    segment, across two rotations, and reads every event back.
#  - Another database with a topic of the same name, cached by a session
#    there, keeps its own partitions and segments: the first database's
#    DDL and rotations do not leak into it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('topic_cache');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.database = 'postgres'
});
$node->start;

# The worker serves "postgres" only: maintenance of d1 and d2 happens when
# the test runs it.
foreach my $db ('d1', 'd2')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, q{
		CREATE EXTENSION pg_eventbus;
		SELECT eventbus.create_topic('shared', 2);
		SELECT eventbus.create_topic('rot', 1, retention => '8 seconds');
	});
}

my $s1 = $node->background_psql('d1');    # uses the topics of d1
my $s2 = $node->background_psql('d2');    # uses the topics of d2
foreach my $s ($s1, $s2)
{
	$s->query_safe(q{SELECT eventbus.publish('shared', '{"warm": 1}', partition => 1)});
	$s->query_safe(q{SELECT eventbus.publish('rot', '{"warm": 1}')});
}

# ---------------------------------------------------------------------------
# Topic DDL seen in the middle of a transaction.

$s1->query_safe('BEGIN');
$s1->query_safe('SELECT txid_current()');
$node->safe_psql('d1', q{SELECT eventbus.alter_topic('shared', partitions => 4)});
is( $s1->query_safe(
		q{SELECT (eventbus.publish('shared', '{"after": "alter"}', partition => 3)).partition}),
	'3',
	'a session in a transaction publishes to a partition added by another session meanwhile');
$s1->query_safe('COMMIT');

my ($rc, $out, $err) = $node->psql('d2',
	q{SELECT eventbus.publish('shared', '{"other": 1}', partition => 3)});
isnt($rc, 0, 'in the other database, topic "shared" still has 2 partitions');
$s2->query_safe('BEGIN');
$s2->query_safe('SELECT txid_current()');
$node->safe_psql('d1', q{SELECT eventbus.alter_topic('shared', partitions => 6)});
is( $s2->query_safe(
		q{SELECT count(*) FROM eventbus.topic WHERE topic = 'shared' AND partitions = 2}),
	'1',
	'... while the first database alters its topic of the same name again');
is( $s2->query_safe(
		q{SELECT (eventbus.publish('shared', '{"other": 2}', partition => 1)).partition}),
	'1',
	'... and a session there that has it cached publishes to it as before');
$s2->query_safe('COMMIT');

# ---------------------------------------------------------------------------
# Rotation: the session publishes into the current segment each time.

# The segment table that receives new events, as the catalog records it.
sub current_segment
{
	my ($db) = @_;
	return $node->safe_psql(
		$db, q{
		SELECT s.table_oid::regclass FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id)
		WHERE t.topic = 'rot' AND s.activated_at IS NOT NULL
		ORDER BY s.segment DESC LIMIT 1});
}

# Runs maintenance in d1 until it rotates "rot" (due retention / 8 = 1 s
# after the current segment was activated, once it holds an event).
sub rotate
{
	my $before = current_segment('d1');
	foreach my $try (1 .. 100)
	{
		$node->safe_psql('d1', 'SELECT count(*) FROM eventbus.run_maintenance()');
		return 1 if current_segment('d1') ne $before;
		usleep(100_000);
	}
	return 0;
}

# Publishes a value to "rot" in a session; the segment table it landed in.
sub landed
{
	my ($session, $value) = @_;
	my $pos = $session->query_safe(qq{SELECT (eventbus.publish('rot', $value)).position});
	return $session->query_safe(
		qq{SELECT tableoid::regclass FROM eventbus_data.rot WHERE partition = 0 AND position = $pos});
}

my $d2_segment = current_segment('d2');
foreach my $round (1 .. 2)
{
	ok(rotate(), "rotation $round of topic \"rot\" in d1");
	my $seg = current_segment('d1');
	my $landed = landed($s1, qq{'{"round": $round}'});
	is($landed, $seg,
		"after rotation $round, a session that had the topic cached publishes into the new segment $seg");
}
is($s1->query_safe(q{SELECT count(*) FROM eventbus.read('rot', 0, -1, 100)}),
	'3', 'the session reads back every event of "rot" across the rotations');

is(current_segment('d2'), $d2_segment,
	'topic "rot" of the other database did not rotate');
my $landed_d2 = landed($s2, q{'{"d2": 1}'});
is($landed_d2, $d2_segment,
	'the other database\'s session publishes into its own current segment');
is($s2->query_safe(q{SELECT count(*) FROM eventbus.read('rot', 0, -1, 100)}),
	'2', '... and reads back its own two events only');

$s1->quit;
$s2->quit;
ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
done_testing();
