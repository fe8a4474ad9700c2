# monitoring/: the queries file for Debian's prometheus-postgres-exporter
# and the alert rules.
#
#  - The real exporter binary, started against a test cluster with
#    monitoring/postgres_exporter/queries.yaml, serves the eventbus series
#    with the values of known activity: events published, consumed (by
#    commit() and poll(commit => true)), dead-lettered, a rolled-back
#    publish not counted, consumer lag and pending retries; per group
#    (eventbus.group_stats and eventbus.groups): positions consumed, events
#    dead-lettered, dead letters waiting, paused, when counting started.
#  - promtool check rules passes on monitoring/alerts.yml.
#
# Skipped, with the reason, where the packages prometheus-postgres-exporter
# and prometheus (promtool) are not installed (scripts/deps.sh installs
# them).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(usleep);

my $exporter = '/usr/bin/prometheus-postgres-exporter';
my $promtool = '/usr/bin/promtool';
my $src = $ENV{EB_SRC} // '.';
plan skip_all => "$exporter not installed (Debian package prometheus-postgres-exporter)"
  unless -x $exporter;
plan skip_all => "$promtool not installed (Debian package prometheus)"
  unless -x $promtool;

# promtool on the rules file
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ $promtool, 'check', 'rules', "$src/monitoring/alerts.yml" ],
	'>', \$out, '2>', \$err);
ok($ok, 'promtool check rules monitoring/alerts.yml') or diag("$out$err");

my $node = PostgreSQL::Test::Cluster->new('exporter');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('mx', 2);
SELECT eventbus.create_group('mxg', 'mx', 'earliest', max_attempts => 1);
SELECT eventbus.create_group('mxa', 'mx', 'earliest');
});

# known activity: 10 events published (and one rolled back); group mxg: 4
# consumed by commit(), 3 by poll(commit => true), 1 dead-lettered; group
# mxa: 2 consumed by poll(commit => true), then paused
$node->safe_psql('postgres', q{
SELECT eventbus.publish('mx', jsonb_build_object('i', i), partition => 0) FROM generate_series(1, 10) i;
BEGIN;
SELECT eventbus.publish('mx', '{"rolled":"back"}', partition => 1);
ROLLBACK;
});
$node->safe_psql('postgres', q{
BEGIN;
SELECT count(*) FROM eventbus.poll('mxg', 'mx', 4);
SELECT eventbus.commit('mxg', 'mx', 0, 3);
COMMIT;
SELECT count(*) FROM eventbus.poll('mxg', 'mx', 3, commit => true);
BEGIN;
SELECT count(*) FROM eventbus.poll('mxg', 'mx', 1);
SELECT eventbus.nack('mxg', 'mx', 0, 7, reason => 'bad');
COMMIT;
SELECT count(*) FROM eventbus.poll('mxa', 'mx', 2, commit => true);
SELECT eventbus.pause_group('mxa', 'mx');
});

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $host = $node->host;
my $dsn = sprintf('postgresql://%s@:%d/postgres?host=%s&sslmode=disable',
	scalar(getpwuid($<)), $node->port, $host);
my $log = $PostgreSQL::Test::Utils::tmp_check . '/exporter.log';
my $h = IPC::Run::start(
	[
		$exporter, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$src/monitoring/postgres_exporter/queries.yaml",
		'--disable-default-metrics', '--disable-settings-metrics'
	],
	'>', $log, '2>&1',
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });

my $http = HTTP::Tiny->new(timeout => 10);
my $body = '';
# the exporter answers once it listens; a few seconds at most
for (1 .. 100)
{
	my $r = $http->get("http://127.0.0.1:$port/metrics");
	if ($r->{success} && $r->{content} =~ /^eventbus_topic_published/m)
	{
		$body = $r->{content};
		last;
	}
	usleep(100_000);
}
$h->kill_kill;
ok($body ne '', 'the exporter serves eventbus series')
  or diag(slurp_file($log));

# value of a series with these labels (in any order)
sub series
{
	my ($name, %labels) = @_;
	foreach my $line (split /\n/, $body)
	{
		next unless $line =~ /^\Q$name\E\{([^}]*)\} (\S+)$/;
		my ($l, $v) = ($1, $2);
		my %have = map { /^(\w+)="(.*)"$/ ? ($1 => $2) : () } split /,/, $l;
		next if grep { ($have{$_} // '') ne $labels{$_} } keys %labels;
		return $v + 0;
	}
	return undef;
}

is(series('eventbus_topic_published', topic => 'mx'), 10,
	'published counts committed events only');
is(series('eventbus_topic_consumed', topic => 'mx'), 9,
	'consumed counts commit() and poll(commit => true) of both groups');
is(series('eventbus_topic_dead_lettered', topic => 'mx'), 1, 'one dead letter');
is(series('eventbus_topic_published', topic => 'mx.dlq'), 1,
	'the dead letter was published to the dead-letter topic');
ok(series('eventbus_topic_stats_reset_seconds', topic => 'mx') > 0, 'stats_reset is set');
is(series('eventbus_consumer_lag', group_name => 'mxg', topic => 'mx', partition => '0'), 3,
	'lag of partition 0: positions 7 to 9');
is(series('eventbus_consumer_lag', group_name => 'mxg', topic => 'mx', partition => '1'), 0,
	'lag of partition 1: 0, its only position was rolled back');
is(series('eventbus_consumer_pending_retries', group_name => 'mxg', topic => 'mx', partition => '0'), 0,
	'no retry pending (max_attempts 1: dead-lettered at once)');
ok(series('eventbus_consumer_time_lag_seconds', group_name => 'mxg', topic => 'mx', partition => '0') > 0,
	'time lag of partition 0');
ok(defined series('eventbus_relay_wal_retained_bytes'), 'relay series present');

# per group
is(series('eventbus_group_consumed', group_name => 'mxg', topic => 'mx'), 7,
	'group mxg: 7 positions consumed (commit() and poll(commit => true))');
is(series('eventbus_group_consumed', group_name => 'mxa', topic => 'mx'), 2,
	'group mxa: 2 positions consumed');
is(series('eventbus_group_dead_lettered', group_name => 'mxg', topic => 'mx'), 1,
	'group mxg: one event dead-lettered');
is(series('eventbus_group_dead_lettered', group_name => 'mxa', topic => 'mx'), 0,
	'group mxa: none dead-lettered');
is(series('eventbus_group_dead_letters', group_name => 'mxg', topic => 'mx'), 1,
	'group mxg: one dead letter waiting for redrive');
is(series('eventbus_group_paused', group_name => 'mxa', topic => 'mx'), 1,
	'group mxa is paused');
is(series('eventbus_group_paused', group_name => 'mxg', topic => 'mx'), 0,
	'group mxg is not paused');
ok(series('eventbus_group_stats_reset_seconds', group_name => 'mxg', topic => 'mx') > 0,
	'group stats_reset is set');
like($body, qr/^# TYPE eventbus_group_consumed counter$/m,
	'the per-group counters are exported as counters');

# After a restart: the topic counters start again with a new stats_reset
# (a reset Prometheus recognizes); the group counters are kept in the
# group's rows and go on, with the same stats_reset.
my $before = $node->safe_psql('postgres', q{
SELECT (SELECT extract(epoch FROM stats_reset) FROM eventbus.topic_stats WHERE topic = 'mx')
    || '|' || (SELECT extract(epoch FROM stats_reset) FROM eventbus.group_stats WHERE group_name = 'mxg')});
my ($topic_reset, $group_reset) = split /\|/, $before;
$node->restart;
$node->safe_psql('postgres', q{SELECT eventbus.publish('mx', '{"after": "restart"}', partition => 1)});
my ($published, $new_topic_reset) = split /\|/, $node->safe_psql('postgres',
	q{SELECT published || '|' || extract(epoch FROM stats_reset) FROM eventbus.topic_stats WHERE topic = 'mx'});
is($published, 1, 'after a restart the topic counter starts again');
cmp_ok($new_topic_reset, '>', $topic_reset, '... with a later stats_reset');
is($node->safe_psql('postgres',
	q{SELECT consumed || '|' || dead_lettered || '|' || extract(epoch FROM stats_reset) FROM eventbus.group_stats WHERE group_name = 'mxg'}),
	"7|1|$group_reset", 'the group counters and their stats_reset survive the restart');

$node->stop;
done_testing();
