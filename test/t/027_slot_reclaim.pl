# Shared memory has room for eventbus.max_topics topics and
# eventbus.max_partitions partitions.  Slots that DROP DATABASE and
# DROP EXTENSION leave behind are reclaimed when the room runs out, and the
# slots of live topics never are.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('slot_reclaim');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_eventbus'\n"
	  . "eventbus.max_topics = 16\neventbus.max_partitions = 64\n"
	  # the cluster's room is tested here, not each database's share
	  . "eventbus.max_topics_per_database = 0\n"
	  . "eventbus.max_partitions_per_database = 0\n");
$node->start;

# 12 topics of 4 partitions, one event in each partition: 12 topic slots
# and 48 partition slots.
sub fill
{
	my ($db, $prefix) = @_;
	return $node->psql($db, qq{
		SELECT eventbus.create_topic('$prefix' || i, 4) FROM generate_series(1, 12) i;
		SELECT count(*) FROM generate_series(1, 12) i, generate_series(0, 3) p,
		  eventbus.publish('$prefix' || i, '{}', partition => p);
	}, on_error_stop => 1);
}

$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION pg_eventbus');
my ($rc, $out, $err) = fill('other', 'o');
is($rc, 0, 'twelve topics used in database other') or diag($err);

$node->safe_psql('postgres', 'CREATE EXTENSION pg_eventbus');
$node->safe_psql('postgres', q{
	SELECT eventbus.create_topic('live', 1);
	SELECT eventbus.publish('live', '{"n": 0}');
});
$rc = $node->psql('postgres', q{
	SELECT eventbus.create_topic('p' || i, 4) FROM generate_series(1, 12) i;
	SELECT count(*) FROM generate_series(1, 12) i, generate_series(0, 3) p,
	  eventbus.publish('p' || i, '{}', partition => p);
}, stderr => \$err);
like($err, qr/too many topics in use/,
	'while database other exists, its topics keep their slots');

$node->safe_psql('postgres', 'DROP DATABASE other');
($rc, $out, $err) = fill('postgres', 'a');
is($rc, 0, 'after DROP DATABASE, its slots are reclaimed') or diag($err);

$node->safe_psql('postgres', q{
	DROP EXTENSION pg_eventbus CASCADE;
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('live', 1);
	SELECT eventbus.publish('live', '{"n": 0}');
});
($rc, $out, $err) = fill('postgres', 'b');
is($rc, 0, 'after DROP EXTENSION and CREATE EXTENSION, the old topics\' slots are reclaimed')
  or diag($err);

# 13 live topics now; three more fit, the seventeenth does not: no live
# topic's slot was taken.
$node->safe_psql('postgres', q{
	SELECT eventbus.create_topic('c' || i, 1) FROM generate_series(1, 4) i;
	SELECT eventbus.publish('c' || i, '{}') FROM generate_series(1, 3) i;
});
$rc = $node->psql('postgres', q{SELECT eventbus.publish('c4', '{}')}, stderr => \$err);
like($err, qr/too many topics in use/, 'live topics keep their slots');

is($node->safe_psql('postgres', q{
	SELECT string_agg(position::text, ',' ORDER BY i)
	  FROM generate_series(1, 2) i, eventbus.publish('live', jsonb_build_object('n', i))}),
	'1,2', 'positions of a live topic go on after reclaiming');
is($node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.read('b12', 3)}),
	'1', 'events of the topics that needed reclaimed slots are there');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/), 'no crash');
$node->stop;
done_testing();
