# Without shared_preload_libraries the extension installs, and every
# function that needs shared memory fails with SQLSTATE 55000 and a hint
# naming the setting; once preloaded, the same database works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->append_conf('postgresql.conf', "wal_level = logical\n");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION pg_eventbus');
pass('the extension installs without being preloaded');

foreach my $call (
	"SELECT eventbus.create_topic('t')",
	"SELECT eventbus.publish('t', '{}')",
	"SELECT * FROM eventbus.read('t', 0)",
	"SELECT * FROM eventbus.run_maintenance()")
{
	my ($rc, $stdout, $stderr) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$call");
	isnt($rc, 0, "$call fails");
	like($stderr, qr/ERROR:  55000: pg_eventbus must be loaded via shared_preload_libraries/,
		"$call names the missing preload with SQLSTATE 55000");
	like($stderr, qr/HINT:  Add pg_eventbus to shared_preload_libraries/,
		"$call hints at the setting");
}

$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_eventbus'\n");
$node->restart;
$node->safe_psql('postgres', "SELECT eventbus.create_topic('t')");
is($node->safe_psql('postgres', "SELECT position FROM eventbus.publish('t', '{}')"),
	'0', 'after preloading, the same database publishes');

$node->stop;
done_testing();
