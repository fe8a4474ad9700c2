# Randomized test of consumer groups (invariant 4, exactly once inside the
# database): producers publish while several members of a group consume in
# transactions, with random aborts; every committed event lands in the sink
# exactly once and each partition's events in position order.  A second
# group consumed by leasing members that sometimes "die" before committing
# loses nothing (at least once).  Finally the server is stopped immediately
# while a member's transaction is open, and after the restart the sink is
# still exact.
#
# Size: EB_STRESS_SECONDS (default 6), EB_STRESS_PRODUCERS (3),
# EB_STRESS_CONSUMERS (4), EB_STRESS_PARTITIONS (4).

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seconds = $ENV{EB_STRESS_SECONDS} || 6;
my $producers = $ENV{EB_STRESS_PRODUCERS} || 3;
my $consumers = $ENV{EB_STRESS_CONSUMERS} || 4;
my $nparts = $ENV{EB_STRESS_PARTITIONS} || 4;
my $db = 'cstress';

note "consume stress: $seconds s, $producers producers, $consumers consumers, $nparts partitions";

my $node = PostgreSQL::Test::Cluster->new('consume_stress');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
max_connections = @{[ $producers + 2 * $consumers + 20 ]}
log_statement = none
});
$node->start;

$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql(
	$db, qq{
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('cs', $nparts);
SELECT eventbus.create_group('tx', 'cs', 'earliest');
SELECT eventbus.create_group('leased', 'cs', 'earliest');
CREATE SEQUENCE ids;
CREATE TABLE produced (id bigint PRIMARY KEY);
-- ord follows insertion order: per partition it must follow positions
CREATE TABLE sink (ord bigserial, id bigint, partition int, position bigint, member int);
CREATE TABLE lease_sink (id bigint, partition int, position bigint, member int);

-- One member's transaction: poll, apply, commit the positions.  With
-- explicit = false the one-statement form (commit => true) is used.
CREATE FUNCTION consume_tx(member int, maxn int, explicit bool) RETURNS int
LANGUAGE plpgsql AS \$\$
DECLARE n int;
BEGIN
  IF explicit THEN
    WITH ev AS (SELECT * FROM eventbus.poll('tx', 'cs', maxn)),
         ins AS (INSERT INTO sink (id, partition, position, member)
                 SELECT (value->>'id')::bigint, partition, position, member FROM ev
                 ORDER BY partition, position
                 RETURNING partition, position)
    SELECT coalesce(sum(c.events), 0) INTO n FROM (
      SELECT count(*) AS events, eventbus.commit('tx', 'cs', partition, max(position))
        FROM ins GROUP BY partition) c;
  ELSE
    WITH ins AS (INSERT INTO sink (id, partition, position, member)
                 SELECT (value->>'id')::bigint, partition, position, member
                   FROM eventbus.poll('tx', 'cs', maxn, commit => true)
                  ORDER BY partition, position
                 RETURNING 1)
    SELECT count(*) INTO n FROM ins;
  END IF;
  RETURN n;
END \$\$;

-- A leasing member commits the highest position it recorded per
-- partition; a commit refused because another member took the partition
-- over, or because the position belongs to a lease generation the member
-- lost (it holds the partition again, from the committed position), is
-- expected (fencing) and skipped.
CREATE FUNCTION commit_leased(m int) RETURNS int
LANGUAGE plpgsql AS \$\$
DECLARE r record; n int := 0;
BEGIN
  FOR r IN SELECT partition, max(position) AS last FROM lease_sink
            WHERE member = m GROUP BY partition LOOP
    BEGIN
      PERFORM eventbus.commit('leased', 'cs', r.partition, r.last, member => 'm' || m);
      n := n + 1;
    EXCEPTION WHEN object_in_use OR object_not_in_prerequisite_state THEN
      NULL;
    END;
  END LOOP;
  RETURN n;
END \$\$;
});

my $tmp = PostgreSQL::Test::Utils::tempdir;

my $producer_script = q{
\set n random(1, 5)
\set roll random(1, 100)
BEGIN;
INSERT INTO produced
SELECT id FROM (
  SELECT id, eventbus.publish('cs', jsonb_build_object('id', id),
                              key => 'k' || (random() * 40)::int)
    FROM (SELECT nextval('ids') AS id FROM generate_series(1, :n)) s) t;
\if :roll <= 20
ROLLBACK;
\else
COMMIT;
\endif
};

my $tx_script = q{
\set maxn random(1, 30)
\set roll random(1, 100)
\set explicit random(0, 1)
BEGIN;
SELECT consume_tx(:client_id, :maxn, :explicit = 1);
\if :roll <= 25
ROLLBACK;
\else
COMMIT;
\endif
};

# A leasing member records what it got (in the poll's own statement) and
# commits it, except that one time in ten it "dies" before committing: its
# lease runs out and another member gets those events again.
my $lease_script = q{
\set maxn random(1, 30)
\set die random(1, 100)
INSERT INTO lease_sink
SELECT (value->>'id')::bigint, partition, position, :client_id
  FROM eventbus.poll('leased', 'cs', :maxn, member => 'm' || :client_id, lease => '0.3 seconds');
\if :die > 10
SELECT commit_leased(:client_id);
\endif
};

sub write_script
{
	my ($name, $body) = @_;
	my $path = "$tmp/$name.sql";
	open my $fh, '>', $path or die $!;
	print $fh $body;
	close $fh;
	return $path;
}

my $p_script = write_script('produce', $producer_script);
my $t_script = write_script('consume_tx', $tx_script);
my $l_script = write_script('consume_leased', $lease_script);

my @conn = ('-h', $node->host, '-p', $node->port);

sub pgbench
{
	my ($script, $clients, $duration, $out) = @_;
	return IPC::Run::start(
		[ 'pgbench', '-n', @conn, '-c', $clients, '-j', $clients,
		  '-T', $duration, '-f', $script, $db ],
		'>', $out, '2>', $out);
}

my ($pout, $tout, $lout) = ('', '', '');
my $ph = pgbench($p_script, $producers, $seconds, \$pout);
my $th = pgbench($t_script, $consumers, $seconds + 1, \$tout);
my $lh = pgbench($l_script, $consumers, $seconds + 1, \$lout);
$ph->finish;
$th->finish;
$lh->finish;
note "producers: " . ($pout =~ /(number of transactions actually processed: \d+)/)[0];
note "tx consumers: " . ($tout =~ /(number of transactions actually processed: \d+)/)[0];
note "leased consumers: " . ($lout =~ /(number of transactions actually processed: \d+)/)[0];
unlike($pout, qr/(?:aborted|ERROR)/, 'producers ran without errors') or diag($pout);
unlike($tout, qr/(?:aborted|ERROR)/, 'transactional consumers ran without errors') or diag($tout);
unlike($lout, qr/(?:aborted|ERROR)/, 'leasing consumers ran without errors') or diag($lout);

my $produced = $node->safe_psql($db, 'SELECT count(*) FROM produced');
cmp_ok($produced, '>', 100, "producers committed $produced events");

# Catch up: members until nothing is left.
for (my $i = 0; $i < 1000; $i++)
{
	last if $node->safe_psql($db, 'SELECT consume_tx(0, 500, false)') == 0;
}
# Each catch-up poll runs in a new session, and what a member was handed
# is remembered per session, so it commits before its session ends.  A
# poll that gets nothing may only mean that the pgbench members' leases
# (0.3 s) have not run out yet: go on until the group has no lag.
for (my $i = 0; $i < 1000; $i++)
{
	my ($n) = split /\n/, $node->safe_psql($db, q{
		WITH e AS (SELECT * FROM eventbus.poll('leased', 'cs', 500, member => 'm-1', lease => '1 minute')),
		     i AS (INSERT INTO lease_sink SELECT (value->>'id')::bigint, partition, position, -1 FROM e RETURNING 1)
		SELECT count(*) FROM i;
		SELECT commit_leased(-1);});
	next if $n > 0;
	last if $node->safe_psql($db,
		q{SELECT sum(lag) FROM eventbus.consumer_lag WHERE group_name = 'leased'}) == 0;
	select(undef, undef, undef, 0.2);
}

sub check_exact
{
	my ($label) = @_;
	is($node->safe_psql($db, q{
		SELECT count(*) FROM (
		  (SELECT id FROM produced EXCEPT ALL SELECT id FROM sink)
		  UNION ALL
		  (SELECT id FROM sink EXCEPT ALL SELECT id FROM produced)) d}),
		'0', "$label: the sink holds every committed event exactly once");
	is($node->safe_psql($db, q{
		SELECT count(*) FROM (
		  SELECT position <= lag(position) OVER (PARTITION BY partition ORDER BY ord) AS backwards
		    FROM sink) s WHERE backwards}),
		'0', "$label: each partition was applied in position order");
}
check_exact('transactional members');
is($node->safe_psql($db, 'SELECT count(DISTINCT member) > 1 FROM sink WHERE member > 0'),
	't', 'several members shared the work');

is($node->safe_psql($db, q{
	SELECT count(*) FROM (SELECT id FROM produced EXCEPT SELECT id FROM lease_sink) d}),
	'0', 'leased members: nothing lost (at least once)');
is($node->safe_psql($db, q{SELECT count(*) FROM lease_sink WHERE id NOT IN (SELECT id FROM produced)}),
	'0', 'leased members: no aborted event was delivered');
is($node->safe_psql($db, q{SELECT sum(lag) FROM eventbus.consumer_lag WHERE group_name IN ('tx', 'leased')}),
	'0', 'both groups caught up');

# An immediate stop while a member's transaction is open and has applied
# its batch: after the restart the batch is delivered again, once.
$node->safe_psql($db, q{
	INSERT INTO produced
	SELECT id FROM (SELECT id, eventbus.publish('cs', jsonb_build_object('id', id))
	                  FROM (SELECT nextval('ids') AS id FROM generate_series(1, 50)) s) t});
my $member = $node->background_psql($db);
$member->query_safe('BEGIN');
my $got = $member->query_safe('SELECT consume_tx(7, 1000, true)');
cmp_ok($got, '>=', 50, "an open member transaction applied $got events");
$node->stop('immediate');
eval { $member->quit };
$node->start;
for (my $i = 0; $i < 100; $i++)
{
	last if $node->safe_psql($db, 'SELECT consume_tx(0, 500, false)') == 0;
}
check_exact('after an immediate stop');
is($node->safe_psql($db, 'SELECT count(*) FROM sink WHERE member = 7'), '0',
	"the crashed member's work is gone");

$node->stop;
done_testing();
