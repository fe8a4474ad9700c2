# Randomized many-producer, many-reader test of invariant 2: every
# committed event is read exactly once, in position order per partition,
# by every reader; no aborted event is ever read.
#
# Producers (one pgbench run) publish 1-5 events per transaction, single or
# batched, with random keys, into a topic; each event's value carries a
# unique id that the same transaction records in table "produced".  Some
# transactions sleep before finishing (long-running producers), some roll a
# savepoint back, about 20% roll back entirely.
#
# Readers (a second pgbench run, at the same time) each keep their own
# cursor per partition.  A reader transaction reads a random partition after
# its cursor, records what it read in table "consumed" and moves the cursor,
# all in one transaction; odd-numbered readers use REPEATABLE READ and read
# twice with the same snapshot.
#
# Meanwhile a third pgbench run calls eventbus.run_maintenance() in a loop:
# with a retention of 2 seconds the current segment is switched every
# quarter of a second or so while producers publish and readers read.  A
# session keeps segment 1 locked, so retention never drops a segment (the
# drop is skipped while the lock is held) and every event stays readable.
#
# When the producers are done, the readers catch up, and SQL checks that
# every reader consumed exactly the produced ids, each at the position
# publish returned, in increasing position order.
#
# Size: EB_STRESS_SECONDS (default 6), EB_STRESS_PRODUCERS (4),
# EB_STRESS_READERS (4), EB_STRESS_PARTITIONS (4).

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seconds = $ENV{EB_STRESS_SECONDS} || 6;
my $producers = $ENV{EB_STRESS_PRODUCERS} || 4;
my $readers = $ENV{EB_STRESS_READERS} || 4;
my $nparts = $ENV{EB_STRESS_PARTITIONS} || 4;
my $db = 'stress';

note "stress: $seconds s, $producers producers, $readers readers, $nparts partitions";

my $node = PostgreSQL::Test::Cluster->new('stress');
$node->init;
my $max_conn = $producers + $readers + 20;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
max_connections = $max_conn
log_statement = none
});
$node->start;

$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql(
	$db, qq{
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('stress', $nparts, retention => '2 seconds');

CREATE SEQUENCE event_ids;
CREATE SEQUENCE batches;

-- one row per event of a committed producer transaction
CREATE TABLE produced (
    id        bigint PRIMARY KEY,
    partition int NOT NULL,
    position  bigint NOT NULL,
    how       text NOT NULL);

-- one row per event read by a reader, in the order it was read
CREATE TABLE consumed (
    reader    int NOT NULL,
    partition int NOT NULL,
    position  bigint NOT NULL,
    id        bigint,
    batch     bigint NOT NULL,
    ord       bigint NOT NULL,
    isolation text NOT NULL,
    catch_up  bool NOT NULL);

CREATE TABLE cursors (
    reader    int,
    partition int,
    position  bigint NOT NULL DEFAULT -1,
    PRIMARY KEY (reader, partition));
INSERT INTO cursors (reader, partition)
SELECT r, p FROM generate_series(0, $readers - 1) r, generate_series(0, $nparts - 1) p;

-- Reads up to maxn events of partition p after reader r's cursor, records
-- them and moves the cursor; returns how many were read.
CREATE FUNCTION consume(r int, p int, maxn int, catching_up bool DEFAULT false)
RETURNS int LANGUAGE plpgsql AS \$\$
DECLARE
    v_after bigint;
    v_batch bigint;
    v_n     int;
    v_last  bigint;
BEGIN
    SELECT c.position INTO v_after FROM cursors c WHERE c.reader = r AND c.partition = p;
    v_batch := nextval('batches');
    WITH ins AS (
        INSERT INTO consumed (reader, partition, position, id, batch, ord, isolation, catch_up)
        SELECT r, e.partition, e.position, (e.value->>'id')::bigint, v_batch, e.ord,
               current_setting('transaction_isolation'), catching_up
        FROM eventbus.read('stress', p, v_after, maxn)
             WITH ORDINALITY AS e(topic, partition, position, event_id, key,
                                  value, headers, created_at, ord)
        RETURNING consumed.position)
    SELECT count(*), max(ins.position) INTO v_n, v_last FROM ins;
    IF v_n > 0 THEN
        UPDATE cursors c SET position = v_last WHERE c.reader = r AND c.partition = p;
    END IF;
    RETURN v_n;
END
\$\$;
});

# ---------------------------------------------------------------------------
# pgbench scripts

my $tmp = PostgreSQL::Test::Utils::tempdir;

my $publish_single = q{
INSERT INTO produced (id, partition, position, how)
SELECT id, (pos).partition, (pos).position, 'single'
FROM (SELECT id,
             eventbus.publish('stress', jsonb_build_object('id', id),
                 key => CASE WHEN random() < 0.2 THEN NULL
                             ELSE 'k' || (random() * 50)::int END) AS pos
      FROM (SELECT nextval('event_ids') AS id FROM generate_series(1, :n)) s) t;
};

my $producer_script = qq{
\\set n random(1, 5)
\\set kind random(1, 3)
\\set sp random(1, 100)
\\set sl random(1, 100)
\\set roll random(1, 100)
BEGIN;
\\if :kind = 1
WITH ids AS (
    SELECT nextval('event_ids') AS id, 'k' || (random() * 50)::int AS k
    FROM generate_series(1, :n)),
arr AS (
    SELECT array_agg(id ORDER BY id) AS ids,
           array_agg(jsonb_build_object('id', id) ORDER BY id) AS vals,
           array_agg(k ORDER BY id) AS keys
    FROM ids)
INSERT INTO produced (id, partition, position, how)
SELECT arr.ids[b.ord], b.partition, b.position, 'batch'
FROM arr,
     eventbus.publish_batch('stress', arr.vals, arr.keys)
         WITH ORDINALITY AS b(partition, position, duplicate, ord);
\\else
$publish_single
\\endif
\\if :sp <= 10
SAVEPOINT s;
$publish_single
ROLLBACK TO SAVEPOINT s;
\\endif
\\if :sl <= 3
\\sleep 200 ms
\\elif :sl <= 30
\\sleep :sl ms
\\endif
\\if :kind = 3
$publish_single
\\endif
\\if :roll <= 20
ROLLBACK;
\\else
COMMIT;
\\endif
};

my $reader_script = qq{
\\set part random(0, $nparts - 1)
\\set maxn random(1, 20)
\\set twice random(0, 1)
\\if :client_id % 2 = 1
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT consume(:client_id, :part, :maxn);
\\sleep 5 ms
SELECT consume(:client_id, :part, :maxn);
COMMIT;
\\else
BEGIN;
SELECT consume(:client_id, :part, :maxn);
\\if :twice = 1
\\sleep 2 ms
SELECT consume(:client_id, :part, :maxn);
\\endif
COMMIT;
\\endif
};

my $maintenance_script = q{
SELECT count(*) FROM eventbus.run_maintenance();
\sleep 50 ms
};

my $pfile = "$tmp/producer.sql";
my $rfile = "$tmp/reader.sql";
PostgreSQL::Test::Utils::append_to_file($pfile, $producer_script);
PostgreSQL::Test::Utils::append_to_file($rfile, $reader_script);
my $mfile = "$tmp/maintenance.sql";
PostgreSQL::Test::Utils::append_to_file($mfile, $maintenance_script);

sub start_pgbench
{
	my ($file, $clients, $out, $err) = @_;
	my $jobs = $clients < 2 ? $clients : 2;
	my @cmd = (
		'pgbench', '-n', '-h', $node->host, '-p', $node->port,
		'-c', $clients, '-j', $jobs, '-T', $seconds, '-f', $file, $db);
	note "running: @cmd";
	return IPC::Run::start(\@cmd, '>', $out, '2>', $err,
		IPC::Run::timeout($seconds + $PostgreSQL::Test::Utils::timeout_default));
}

my $pin = $node->background_psql($db);
$pin->query_safe('BEGIN; LOCK TABLE eventbus_data."stress$1" IN ACCESS SHARE MODE;');

my ($pout, $perr, $rout, $rerr, $mout, $merr) = ('', '', '', '', '', '');
my $prun = start_pgbench($pfile, $producers, \$pout, \$perr);
my $rrun = start_pgbench($rfile, $readers, \$rout, \$rerr);
my $mrun = start_pgbench($mfile, 1, \$mout, \$merr);
my $pok = $prun->finish;
my $rok = $rrun->finish;
my $mok = $mrun->finish;
note "producers:\n$pout$perr";
note "readers:\n$rout$rerr";
note "maintenance:\n$mout$merr";

# No more switches, nothing to drop.
$node->safe_psql($db, "SELECT eventbus.alter_topic('stress', retention => '0')");
$pin->query_safe('COMMIT');
$pin->quit;

ok($pok, 'producer pgbench succeeded') or diag($perr);
ok($rok, 'reader pgbench succeeded') or diag($rerr);
ok($mok, 'maintenance pgbench succeeded') or diag($merr);
unlike($perr, qr/ERROR|abort/i, 'no producer transaction failed');
unlike($rerr, qr/ERROR|abort/i, 'no reader transaction failed');

# ---------------------------------------------------------------------------
# Catch up once every producer session is gone.

$node->poll_query_until($db,
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
) or die 'pgbench sessions did not go away';

my $read_live = $node->safe_psql($db, 'SELECT count(*) FROM consumed');
my $rounds = 0;
while (1)
{
	my $n = $node->safe_psql(
		$db, qq{
		SELECT sum(consume(r, p, 10000, true))
		FROM generate_series(0, $readers - 1) r, generate_series(0, $nparts - 1) p});
	$rounds++;
	last if $n == 0;
	die 'readers do not catch up' if $rounds > 1000;
}
note "catch-up took $rounds rounds";

# ---------------------------------------------------------------------------
# Checks

my $produced = $node->safe_psql($db, 'SELECT count(*) FROM produced');
my $ids_taken = $node->safe_psql($db, 'SELECT last_value FROM event_ids');
note "produced $produced committed events, $ids_taken ids taken, $read_live events read while producers ran";

cmp_ok($produced, '>', 0, 'producers committed events');
cmp_ok($ids_taken, '>', $produced,
	'some publishes were rolled back (whole transactions or savepoints)');
cmp_ok($read_live, '>', 0, 'readers read events while producers were running');
my $activated = $node->safe_psql($db,
	'SELECT count(*) FROM eventbus.segment WHERE activated_at IS NOT NULL');
note "$activated segments were activated";
cmp_ok($activated, '>=', 3,
	'segments were switched while producers and readers ran');
is( $node->safe_psql(
		$db,
		'SELECT count(*) = max(segment) AND min(segment) = 1 FROM eventbus.segment'),
	't',
	'no segment was dropped');
cmp_ok(
	$node->safe_psql(
		$db, 'SELECT count(DISTINCT tableoid) FROM eventbus_data.stress'),
	'>=', 3,
	'the events are spread over several segments');
is( $node->safe_psql(
		$db,
		"SELECT count(DISTINCT isolation) FROM consumed WHERE NOT catch_up"),
	$readers >= 2 ? '2' : '1',
	'READ COMMITTED and REPEATABLE READ readers both read events');

is( $node->safe_psql(
		$db,
		'SELECT count(*) FROM (SELECT partition, position FROM produced GROUP BY 1, 2 HAVING count(*) > 1) d'
	),
	'0',
	'publish never returned the same position twice in a partition');

is( $node->safe_psql(
		$db, q{
		SELECT count(*)
		FROM eventbus_data.stress e
		FULL JOIN produced p ON p.id = (e.value->>'id')::bigint
		WHERE e.event_id IS NULL OR p.id IS NULL
		   OR e.partition <> p.partition OR e.position <> p.position}),
	'0',
	'the topic holds exactly the events of committed publishes, at the positions publish returned'
);

for my $r (0 .. $readers - 1)
{
	is( $node->safe_psql(
			$db, qq{
			SELECT count(*) FROM produced p
			WHERE NOT EXISTS (SELECT 1 FROM consumed c WHERE c.reader = $r AND c.id = p.id)}
		),
		'0',
		"reader $r missed no committed event");
	is( $node->safe_psql(
			$db, qq{
			SELECT count(*) FROM consumed c
			WHERE c.reader = $r
			  AND NOT EXISTS (SELECT 1 FROM produced p WHERE p.id = c.id)}),
		'0',
		"reader $r read no event of a rolled-back publish");
	is( $node->safe_psql(
			$db, qq{
			SELECT count(*) FROM (
			    SELECT id FROM consumed WHERE reader = $r GROUP BY id HAVING count(*) > 1) d}
		),
		'0',
		"reader $r read no event twice");
	is( $node->safe_psql(
			$db, qq{
			SELECT count(*) FROM consumed c JOIN produced p USING (id)
			WHERE c.reader = $r
			  AND (c.partition <> p.partition OR c.position <> p.position)}),
		'0',
		"reader $r got each event at the partition and position publish returned"
	);
	is( $node->safe_psql(
			$db, qq{
			SELECT count(*) FROM (
			    SELECT position,
			           lag(position) OVER (PARTITION BY partition ORDER BY batch, ord) AS prev
			    FROM consumed WHERE reader = $r) s
			WHERE position <= prev}),
		'0',
		"reader $r read each partition in strictly increasing position order");
}

ok( !$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no assertion failure or crashed process in the server log');

$node->stop;
done_testing();
