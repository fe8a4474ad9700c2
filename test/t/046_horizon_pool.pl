# The shared pool of read-horizon registrations: a transaction that
# publishes to more partitions than its own share uses the overflow pool;
# when that is exhausted publish fails with a clear error and nothing is
# registered or handed out wrongly; entries come back at commit, rollback
# and after a prepared transaction ends.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('horizon_pool');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
max_connections = 5
max_prepared_transactions = 2
max_worker_processes = 4
max_wal_senders = 2
autovacuum = off
});
$node->start;

my $db = 'app';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('wide', 1024);
	SELECT eventbus.create_group('g', 'wide', start_at => 'earliest');
});

# One event to each of the first n partitions, in one transaction.
sub fan_out
{
	my ($n) = @_;
	return qq{SELECT count(*) FROM generate_series(0, $n - 1) p,
	          LATERAL eventbus.publish('wide', jsonb_build_object('p', p), partition => p)};
}

# Far more partitions than the pool (a few hundred entries here) can hold.
my ($ret, $out, $err) = $node->psql($db, fan_out(1024));
isnt($ret, 0, 'publishing to 1024 partitions in one transaction fails');
like($err, qr/too many partitions written by open transactions/, 'with a clear error');

# The pool is whole again: a transaction over the overflow pool works, and
# so does a later one, after commit and after rollback.
is($node->safe_psql($db, fan_out(100)), '100', 'a transaction on 100 partitions commits');
$node->safe_psql($db, 'BEGIN; ' . fan_out(100) . '; ROLLBACK;');
is($node->safe_psql($db, fan_out(100)), '100', 'and again after a rolled-back one');

# A prepared transaction keeps its registrations until ROLLBACK PREPARED,
# even when a transaction prepared after it (higher positions) committed.
$node->safe_psql($db, 'BEGIN; ' . fan_out(20) . "; PREPARE TRANSACTION 'a';");
$node->safe_psql($db, 'BEGIN; ' . fan_out(20) . "; PREPARE TRANSACTION 'b';");
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM eventbus.poll('g', 'wide', 1000, commit => true)}),
	'200',
	'the prepared transactions hold back their events');
$node->safe_psql($db, "COMMIT PREPARED 'b'");
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM eventbus.poll('g', 'wide', 1000, commit => true)}),
	'0',
	'partitions 0 to 19 are still held by the first prepared transaction');
$node->safe_psql($db, "ROLLBACK PREPARED 'a'");
is( $node->safe_psql(
		$db,
		q{SELECT count(*) || ':' || count(DISTINCT partition) FROM eventbus.poll('g', 'wide', 1000, commit => true)}),
	'20:20',
	'after ROLLBACK PREPARED the committed prepared events are delivered');

# The dummy processes' shares are reused by later prepared transactions.
foreach my $i (1 .. 3)
{
	$node->safe_psql($db, 'BEGIN; ' . fan_out(30) . "; PREPARE TRANSACTION 'c$i';");
	$node->safe_psql($db, "COMMIT PREPARED 'c$i'");
}
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM eventbus.poll('g', 'wide', 1000, commit => true)}),
	'90',
	'three more prepared transactions in a row: all delivered');
is($node->safe_psql($db, fan_out(100)), '100', 'the pool is still whole');

$node->stop;
done_testing();
