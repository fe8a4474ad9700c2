# Retention never removes events before readers could see them.
#
# A long producer transaction holds position 0 of a topic with a short
# retention; 100 events committed after it (positions 1 to 100) cannot be
# read while it is open.  The segment holding them rotates and the
# retention passes.  When the long transaction is finally terminated, the
# next maintenance pass must not drop the segment: the 100 events only now
# became readable.  The segment is sealed then (eventbus.segment.sealed_at)
# and dropped once it has been sealed for longer than the retention.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('retention_horizon');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.database = 'postgres'
});
$node->start;

# The background workers serve only database "postgres" (eventbus.database;
# by default they serve every database): maintenance of this
# database's topics happens only when the test runs it.
my $db = 'app';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('slow', 1, retention => '2 seconds');
});

my $long = $node->background_psql($db);
$long->query_safe('BEGIN');
is($long->query_safe(q{SELECT (eventbus.publish('slow', '{"long": true}')).position}),
	'0', 'the long transaction holds position 0');
my $long_pid = $long->query_safe('SELECT pg_backend_pid()');

is( $node->safe_psql(
		$db,
		q{SELECT min(position) || '-' || max(position) FROM eventbus.publish_batch('slow',
		    array_fill('{"short": true}'::jsonb, ARRAY[100]))}),
	'1-100',
	'100 events committed after it');
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.read('slow', 0, max_events => 1000)}),
	'0', 'none of them is readable while the long transaction is open');

# Rotate: segment 1 holds positions 0 to 100, segment 2 starts at 101.
$node->poll_query_until($db,
	q{SELECT count(*) > 0 FROM eventbus.run_maintenance() WHERE topic = 'slow' AND action = 'rotated'})
  or die 'no rotation';
is( $node->safe_psql(
		$db,
		q{SELECT start_positions FROM eventbus.segment WHERE segment = 2}),
	'{101}',
	'segment 2 starts after the 100 events');

# Let segment 2 be current for longer than the retention.
$node->poll_query_until($db,
	q{SELECT activated_at < now() - interval '2 seconds' FROM eventbus.segment WHERE segment = 2})
  or die 'retention did not pass';
$node->safe_psql($db, 'SELECT count(*) FROM eventbus.run_maintenance()');
is( $node->safe_psql(
		$db,
		q{SELECT sealed_at IS NULL FROM eventbus.segment WHERE segment = 1}),
	't',
	'segment 1 is not sealed while a transaction holds a position in it');

# The long transaction ends; the next pass must keep the events.
$node->safe_psql($db, "SELECT pg_terminate_backend($long_pid)");
$node->poll_query_until($db,
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $long_pid")
  or die 'the long transaction did not end';
$node->safe_psql($db, 'SELECT count(*) FROM eventbus.run_maintenance()');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM eventbus.segment WHERE segment = 1 AND sealed_at IS NOT NULL}),
	'1',
	'maintenance keeps segment 1 and seals it');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) || ':' || min(position) || '-' || max(position)
		  FROM eventbus.read('slow', 0, max_events => 1000)}),
	'100:1-100',
	'the 100 events are readable after the long transaction ended');

# One retention period after sealing, the segment goes.
my $sealed_at = $node->safe_psql($db,
	q{SELECT sealed_at FROM eventbus.segment WHERE segment = 1});
$node->poll_query_until($db,
	q{SELECT count(*) > 0 FROM eventbus.run_maintenance() WHERE topic = 'slow' AND action = 'dropped' AND segment = 1})
  or die 'segment 1 was never dropped';
is( $node->safe_psql(
		$db,
		qq{SELECT now() >= '$sealed_at'::timestamptz + interval '2 seconds'}),
	't',
	'segment 1 is dropped only a retention period after it was sealed');
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.read('slow', 0, max_events => 1000)}),
	'0', 'its events are gone then');

$node->stop;
done_testing();
