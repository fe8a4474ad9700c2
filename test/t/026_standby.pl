# A hot standby: monitoring works, reading topics is refused (a standby
# cannot know which positions the primary is still writing), and nothing
# computed on the standby survives promotion: after promotion positions
# continue after the last one the primary handed out, and maintenance never
# rewrites recorded segment starts.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 'logical');
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
eventbus.maintenance_naptime = 1h
});
$primary->start;
$primary->safe_psql('postgres', q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('t', 1, retention => '1 hour');
	SELECT eventbus.create_group('g', 't', 'earliest');
	SELECT count(*) FROM eventbus.publish_batch('t', array_fill('{}'::jsonb, ARRAY[3]));
});
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', q{SELECT end_positions FROM eventbus.topics WHERE topic = 't'}),
	'{3}', 'the topics view works on the standby');
is($standby->safe_psql('postgres', q{SELECT lag FROM eventbus.consumer_lag WHERE group_name = 'g'}),
	'3', 'consumer_lag works on the standby');
my ($rc, $out, $err) = $standby->psql('postgres', q{SELECT * FROM eventbus.read('t', 0)});
isnt($rc, 0, 'read() is refused on the standby');
like($err, qr/cannot be read or written on a standby/, 'with a clear message');

# The primary moves on, with two segment switches.
sub rotate
{
	$primary->safe_psql('postgres', q{
		SELECT eventbus.alter_topic('t', retention => '1 millisecond');
		SELECT pg_sleep(0.01);
		SELECT count(*) FROM eventbus.run_maintenance();
		SELECT eventbus.alter_topic('t', retention => '1 hour');
	});
}
$primary->safe_psql('postgres', q{SELECT count(*) FROM eventbus.publish_batch('t', array_fill('{}'::jsonb, ARRAY[3]))});
rotate();
$primary->safe_psql('postgres', q{SELECT count(*) FROM eventbus.publish_batch('t', array_fill('{}'::jsonb, ARRAY[2]))});
rotate();
$primary->safe_psql('postgres', q{SELECT eventbus.publish('t', '{}')});
my $readable = $primary->safe_psql('postgres', q{SELECT count(*) FROM eventbus.read('t', 0, max_events => 100)});
my $starts = $primary->safe_psql('postgres',
	q{SELECT string_agg(segment || ':' || coalesce(start_positions::text, '-'), ' ' ORDER BY segment) FROM eventbus.segment});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT end_positions FROM eventbus.topics WHERE topic = 't'}),
	'{9}', 'the standby follows the end position without caching it');

$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
is($standby->safe_psql('postgres', q{SELECT position FROM eventbus.publish('t', '{"after": "promotion"}')}),
	'9', 'after promotion positions continue after the last one the primary handed out');
$standby->safe_psql('postgres', q{SELECT count(*) FROM eventbus.run_maintenance()});
is($standby->safe_psql('postgres',
	q{SELECT string_agg(segment || ':' || coalesce(start_positions::text, '-'), ' ' ORDER BY segment) FROM eventbus.segment WHERE segment <= 3}),
	join(' ', grep { /^[123]:/ } split / /, $starts), 'maintenance kept the recorded segment starts');
my $after = $readable + 1;
is($standby->safe_psql('postgres', q{SELECT count(*), count(DISTINCT position), max(position) FROM eventbus.read('t', 0, max_events => 100)}),
	"$after|$after|9", 'every retained event once, then the new one; no position reused');

$standby->stop;
$primary->stop;
done_testing();
