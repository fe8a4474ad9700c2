# The background workers: launcher and database worker.
#
#  - The launcher starts a worker in a database with the extension, and
#    only in the database named by eventbus.database once that is set; it
#    moves the worker when the setting changes on reload.
#  - The worker rotates segments and drops those past retention by itself,
#    every eventbus.maintenance_naptime; positions keep growing across
#    rotations, also once every event has expired.
#  - Both are visible in pg_stat_activity.
#  - A database that does not exist gives one WARNING naming it, no crash
#    loop and no worker; setting it back starts a worker there again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.maintenance_naptime = 200ms
});
$node->start;

my $db = 'wdb';
my $topic = 'ret';

# "type:database" of the pg_eventbus processes ("-": no database).
my $workers_query =
  "SELECT string_agg(backend_type || ':' || coalesce(datname, '-'), ',' ORDER BY backend_type) FROM pg_stat_activity WHERE backend_type LIKE 'pg_eventbus%'";

# Polls until the query returns $expected, for at most $seconds; the
# retention below is 2 seconds, so waits are short unless something is
# wrong, and a broken worker does not hold the test for minutes.
sub poll_until
{
	my ($dbname, $query, $expected, $seconds) = @_;
	my $deadline = time() + $seconds;
	my $got;
	while (1)
	{
		$got = $node->safe_psql($dbname, $query);
		return 1 if $got eq $expected;
		last if time() > $deadline;
		usleep(100_000);
	}
	diag("still '$got' instead of '$expected' after $seconds s: $query");
	return 0;
}

sub pid_of
{
	my ($type) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = '$type'"
	);
}

# ---------------------------------------------------------------------------
# Launcher and worker, and moving the worker to another database on reload.

$node->poll_query_until('postgres', $workers_query, 'pg_eventbus launcher:-')
  or die 'the launcher did not start';
pass('the launcher is in pg_stat_activity, and no worker stays where the extension is not installed');
my $launcher = pid_of('pg_eventbus launcher');

$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION pg_eventbus');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET eventbus.database = '$db'; SELECT pg_reload_conf();");
ok( $node->poll_query_until(
		'postgres',
		$workers_query,
		"pg_eventbus launcher:-,pg_eventbus worker:$db"),
	'after a reload the worker serves the new database, and only it');
is(pid_of('pg_eventbus launcher'), $launcher, 'the launcher kept running');
my $worker = pid_of('pg_eventbus worker');

# ---------------------------------------------------------------------------
# Rotation and retention by the worker alone.

$node->safe_psql($db,
	"SELECT eventbus.create_topic('$topic', 2, retention => '2 seconds')");

sub publish
{
	my ($tag, $n) = @_;
	return $node->safe_psql(
		$db, qq{
		SELECT string_agg((r).partition || ':' || (r).position, ',' ORDER BY (r).partition, (r).position)
		FROM (SELECT eventbus.publish('$topic', jsonb_build_object('$tag', i), partition => p) AS r
		      FROM generate_series(0, 1) p, generate_series(1, $n) i) s});
}

sub segment_activated
{
	my ($seg) = @_;
	return
	  "SELECT count(*) = 1 FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id) WHERE t.topic = '$topic' AND s.segment = $seg AND s.activated_at IS NOT NULL";
}

sub segment_gone
{
	my ($seg) = @_;
	return
	  "SELECT NOT EXISTS (SELECT 1 FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id) WHERE t.topic = '$topic' AND s.segment = $seg) AND to_regclass('eventbus_data.\"$topic\$$seg\"') IS NULL";
}

# Positions read from both partitions, lowest first per partition.
sub readable
{
	return $node->safe_psql(
		$db, qq{
		SELECT coalesce(string_agg(e.partition || ':' || e.position, ',' ORDER BY p, e.ord), '')
		FROM generate_series(0, 1) p,
		     LATERAL eventbus.read('$topic', p, -1, 1000)
		         WITH ORDINALITY AS e(topic, partition, position, event_id, key,
		                              value, headers, created_at, ord)});
}

is(publish('a', 5), '0:0,0:1,0:2,0:3,0:4,1:0,1:1,1:2,1:3,1:4',
	'first events at positions 0-4');

my $rotated = poll_until($db, segment_activated(2), 't', 30);
ok($rotated, 'the worker rotated to segment 2 by itself');

SKIP:
{
	skip 'the worker does not rotate: retention cannot be checked', 11
	  unless $rotated;

	# Publish and look where the rows went in one transaction, so that the
	# segment cannot be dropped in between.
	my $b = $node->safe_psql(
		$db, qq{
		BEGIN;
		SELECT string_agg((r).partition || ':' || (r).position, ',' ORDER BY (r).partition, (r).position)
		FROM (SELECT eventbus.publish('$topic', jsonb_build_object('b', i), partition => p) AS r
		      FROM generate_series(0, 1) p, generate_series(1, 3) i) s;
		SELECT string_agg(DISTINCT tableoid::regclass::text, ',')
		FROM eventbus_data.$topic WHERE value ? 'b';
		COMMIT;});
	is( $b,
		"0:5,0:6,0:7,1:5,1:6,1:7\neventbus_data.\"$topic\$2\"",
		'after rotation positions continue (5-7), in segment 2');

	ok(poll_until($db, segment_gone(1), 't', 30),
		'the worker dropped segment 1 once it was past retention');
	is( $node->safe_psql(
			$db, "SELECT count(*) FROM eventbus_data.$topic WHERE value ? 'a'"),
		'0',
		'the events of segment 1 are gone');
	my $left = readable();
	my @left = grep { $_ ne '' } split /,/, $left;
	is(scalar(grep { (split /:/)[1] < 5 } @left),
		0, "read() returns none of the dropped events (read: $left)");
	is( $node->safe_psql(
			$db,
			"SELECT bool_and(first_position >= 5 AND end_position = 8) FROM eventbus.topic_partitions('$topic')"
		),
		't',
		'topic_partitions: first position past the dropped events, end position unchanged'
	);

	is(publish('c', 2), '0:8,0:9,1:8,1:9',
		'after a segment was dropped positions continue (8-9)');

	# Without new events, every segment holding events rotates out and
	# expires: one empty current segment and the spare remain.
	ok( poll_until(
			$db,
			"SELECT segments = 2 AND events = 0 AND end_positions = '{10,10}' FROM eventbus.topics WHERE topic = '$topic'",
			't', 30),
		'eventually every event expired; two segments remain');
	is(readable(), '', 'read() returns nothing once every event expired');
	is(publish('d', 1), '0:10,1:10',
		'once every event expired, positions still continue (10)');

	my @drops = (slurp_file($node->logfile) =~
		  /LOG:  pg_eventbus: topic "$topic": dropped segment (\d+)/g);
	cmp_ok(scalar(@drops), '>=', 3,
		'the worker logged each segment it dropped (' . join(',', @drops) . ')');
	is(pid_of('pg_eventbus worker'), $worker,
		'the same worker did all of it (no restarts)');
}

# ---------------------------------------------------------------------------
# A database that does not exist.

my $offset = -s $node->logfile;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET eventbus.database = 'no_such_db'; SELECT pg_reload_conf();"
);
$node->wait_for_log(
	qr/WARNING:  database "no_such_db" named by eventbus.database does not exist/,
	$offset);
pass('a WARNING names the missing database');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_eventbus worker'",
		'0'),
	'the worker of the previous database stopped');

# Wake the launcher once more without a change, and let it go through
# more than one of its naps (5 s): nothing must repeat or restart.  Only
# waiting can show that something does not happen.
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
usleep(6_500_000);

my $log = substr(slurp_file($node->logfile), $offset);
my @warnings = ($log =~ /WARNING:  database "no_such_db"/g);
is(scalar(@warnings), 1, 'the WARNING was logged once');
is(pid_of('pg_eventbus launcher'), $launcher,
	'the launcher is still the same process');
is(pid_of('pg_eventbus worker'), '', 'no worker runs meanwhile');
unlike(
	$log,
	qr/background worker "pg_eventbus launcher".*exited/,
	'the launcher did not exit');

# ---------------------------------------------------------------------------
# Back to the right database.

my $max_active = $node->safe_psql($db,
	"SELECT max(segment) FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id) WHERE t.topic = '$topic' AND activated_at IS NOT NULL"
);
# A new event in the current segment, which is old enough to rotate.
publish('e', 1);
$node->safe_psql('postgres',
	"ALTER SYSTEM SET eventbus.database = '$db'; SELECT pg_reload_conf();");
ok( $node->poll_query_until(
		'postgres',
		$workers_query,
		"pg_eventbus launcher:-,pg_eventbus worker:$db"),
	'set back, a worker serves the database again');
is(pid_of('pg_eventbus launcher'), $launcher,
	'the launcher is still the same process');
isnt(pid_of('pg_eventbus worker'), $worker, 'it is a new worker');

ok( poll_until(
		$db,
		"SELECT max(segment) > $max_active FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id) WHERE t.topic = '$topic' AND activated_at IS NOT NULL",
		't', 30),
	'the new worker maintains the topic');

$log = slurp_file($node->logfile);
unlike($log, qr/ERROR:/, 'no error in the server log');
ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no assertion failure or crashed process in the server log');

$node->stop;
done_testing();
