# Positions never go back after a restart, even when the last positions of a
# partition belonged to rolled-back transactions whose rows vacuum removed,
# and a consumer group stored a position among them ('latest', seek,
# commit): new events must come after what the group stored.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('restart_floor');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_eventbus'\nwal_level = logical\nautovacuum = off\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('t', 1);
	SELECT eventbus.publish('t', '{"n": 0}');
	SELECT eventbus.publish('t', '{"n": 1}');
	BEGIN;
	SELECT eventbus.publish('t', '{"rolled": "back"}');
	SELECT eventbus.publish('t', '{"rolled": "back"}');
	ROLLBACK;
	VACUUM eventbus_data."t$1";
	SELECT eventbus.create_group('late', 't', 'latest');
	SELECT eventbus.create_group('seeker', 't', 'earliest');
	SELECT eventbus.seek('seeker', 't', 0, 4);
});
is($node->safe_psql('postgres', q{SELECT committed_position FROM eventbus.consumer_lag WHERE group_name = 'late'}),
	'3', "'latest' stored position 3, a rolled-back one");

foreach my $mode ('fast', 'immediate')
{
	$node->stop($mode);
	$node->start;
	my $pos = $node->safe_psql('postgres', q{SELECT position FROM eventbus.publish('t', '{"after": "restart"}')});
	cmp_ok($pos, '>=', 4, "after a $mode restart, a new event gets position $pos, not one at or below the group's");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.poll('late', 't', 100, commit => true) WHERE value ? 'after'}),
		'1', "the 'latest' group receives the new event ($mode)");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.poll('seeker', 't', 100) WHERE value ? 'after'}),
	'2', 'the group that sought past the end receives both new events');

$node->stop;
done_testing();
