# Restoring a dump into the same database, without a server restart.
#
# Shared memory keeps a slot per topic (keyed by database and topic uid)
# holding the segment that receives new events and each partition's next
# position.  A restore brings the topics back with the same uid but new
# tables: the slots of the dropped incarnation must not be used.  Both ways
# of restoring in place are covered: DROP EXTENSION ... CASCADE, CREATE
# EXTENSION and a plain-SQL restore; and pg_restore --clean.  Afterwards
# publishing, reading and consumer groups work, and new events come after
# the restored ones.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('restore_same');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
});
$node->start;

my $db = 'app';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql(
	$db, q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('orders', 2);
	SELECT eventbus.publish('orders', jsonb_build_object('n', i), partition => i % 2)
	FROM generate_series(0, 5) i;
	SELECT eventbus.create_group('billing', 'orders', start_at => 'earliest');
});
# Use the topic so that its shared slots are initialized.
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.poll('billing', 'orders', commit => true)}),
	'6', 'six events before the dump');

my $tmp = PostgreSQL::Test::Utils::tempdir;
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/app.dump", $db ], 'pg_dump -Fc');
$node->command_ok([ 'pg_dump', '-Fp', '-f', "$tmp/app.sql", $db ], 'pg_dump -Fp');

# Publishing and reading after a restore: new events follow the restored
# ones in both partitions, and the restored group receives only them.
sub check_after_restore
{
	my ($how) = @_;
	my ($ret, $stdout, $stderr) = $node->psql($db,
		q{SELECT string_agg(e.partition || ':' || e.position, ',' ORDER BY e.partition)
		  FROM generate_series(0, 1) p,
		       LATERAL eventbus.publish('orders', jsonb_build_object('new', p), partition => p) e});
	is($ret, 0, "$how: publish works without a restart") or diag($stderr);
	is($stdout, '0:3,1:3', "$how: new events come right after the restored ones");
	is( $node->safe_psql(
			$db,
			q{SELECT string_agg(position || '=' || coalesce(value->>'n', 'new'), ',' ORDER BY position)
			  FROM eventbus.read('orders', 0)}),
		'0=0,1=2,2=4,3=new',
		"$how: read returns the restored and the new events");
	is( $node->safe_psql(
			$db,
			q{SELECT string_agg(partition || ':' || position, ',' ORDER BY partition)
			  FROM eventbus.poll('billing', 'orders', commit => true)}),
		'0:3,1:3',
		"$how: the restored group receives the new events only");
}

# 1. DROP EXTENSION ... CASCADE, CREATE EXTENSION, restore from plain SQL.
# The extension's schema outlives DROP EXTENSION, so the dump's CREATE
# SCHEMA fails; that must be the only error.
$node->safe_psql($db,
	'DROP EXTENSION pg_eventbus CASCADE; CREATE EXTENSION pg_eventbus;');
my ($out, $err) = ('', '');
IPC::Run::run([ 'psql', '-X', '-q', '-d', $node->connstr($db), '-f', "$tmp/app.sql" ],
	'>', \$out, '2>', \$err);
my @errors = grep { /ERROR/ } split /\n/, $err;
is_deeply([ map { s/^.*ERROR:\s*//r } @errors ], ['schema "eventbus" already exists'],
	'restore from plain SQL after DROP/CREATE EXTENSION: no other error');
check_after_restore('DROP/CREATE EXTENSION and restore');

# 2. pg_restore --clean over the live database.
$node->command_ok(
	[
		'pg_restore', '--clean', '--if-exists', '--exit-on-error',
		'-d', $node->connstr($db), "$tmp/app.dump"
	],
	'pg_restore --clean into the same database');
check_after_restore('pg_restore --clean');

$node->stop;
done_testing();
