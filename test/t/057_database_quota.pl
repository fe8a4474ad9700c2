# eventbus.max_topics and eventbus.max_partitions are the room of the whole
# cluster (shared memory); each database may take only its share
# (eventbus.max_topics_per_database, eventbus.max_partitions_per_database:
# half by default), so one database cannot leave none to the others.
#
#  - create_topic() and alter_topic() past the database's share of
#    partitions fail with 53400, naming the database and the setting;
#  - within its share a database uses its partitions, and another
#    database still creates and uses topics;
#  - the topic count has its share too;
#  - 0 lifts the per-database limit (the cluster's remains).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('quota');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
eventbus.max_topics = 16
eventbus.max_partitions = 64
});
$node->start;
foreach my $db (qw(db_a db_b db_c))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION pg_eventbus');
}

# 64 partitions in the cluster: 32 for each database.
my ($rc, $out, $err) = $node->psql('db_a', q{SELECT eventbus.create_topic('huge', 40)});
isnt($rc, 0, 'a topic past the database\'s share of partitions is refused');
like($err, qr/ERROR:  too many partitions in database "db_a"/, '... naming the database');
like($err, qr/max_partitions_per_database allows 32 per database/, '... the setting and the share');
($rc, $out, $err) = $node->psql('db_a',
	q{\set VERBOSITY verbose
	  SELECT eventbus.create_topic('huge', 40)});
like($err, qr/ERROR:  53400/, '... with SQLSTATE 53400');

$node->safe_psql('db_a', q{
	SELECT eventbus.create_topic('big', 30);
	SELECT count(*) FROM generate_series(0, 29) p, eventbus.publish('big', '{}', partition => p);
});
pass('within its share a database creates and uses 30 partitions');
($rc, $out, $err) = $node->psql('db_a', q{SELECT eventbus.alter_topic('big', partitions => 33)});
like($err, qr/too many partitions in database "db_a"/,
	'alter_topic() cannot grow past the share either');
$node->safe_psql('db_a', q{SELECT eventbus.alter_topic('big', partitions => 32)});
pass('... but up to it');

($rc, $out, $err) = $node->psql('db_b', q{
	SELECT eventbus.create_topic('other', 30);
	SELECT count(*) FROM generate_series(0, 29) p, eventbus.publish('other', '{}', partition => p);
});
is($rc, 0, 'another database still has room for its topics and their partitions')
  or diag($err);

# 16 topics in the cluster: 8 for each database.
($rc, $out, $err) = $node->psql('db_c', q{
	SELECT eventbus.create_topic('n' || i, 1) FROM generate_series(1, 9) i});
like($err, qr/too many topics in database "db_c"/,
	'the ninth topic of a database is refused');
like($err, qr/max_topics_per_database/, '... naming the setting');

# 0: no share, only the cluster's room.
$node->append_conf('postgresql.conf', "eventbus.max_partitions_per_database = 0\n");
$node->reload;
ok( $node->poll_query_until('db_a',
		q{SELECT current_setting('eventbus.max_partitions_per_database') = '0'}),
	'reloaded');
$node->safe_psql('db_a', q{SELECT eventbus.create_topic('more', 2)});
pass('with the share lifted, a database may go past half of the cluster\'s room');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/), 'no crash in the server log');
$node->stop;
done_testing();
