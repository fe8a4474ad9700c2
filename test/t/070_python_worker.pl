# The external worker example (examples/worker.py, psycopg from Debian):
# two copies share a group's partitions through leases, every event is
# processed, failing events are retried and then dead-lettered, and in the
# end the group has no lag and no pending retries.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish timeout);

my $python = '/usr/bin/python3';
plan skip_all => 'Debian python3-psycopg is not installed'
  unless system("$python -c 'import psycopg' 2>/dev/null") == 0;

my $node = PostgreSQL::Test::Cluster->new('python_worker');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_eventbus'\nwal_level = logical\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('orders', 4);
	SELECT eventbus.create_group('billing', 'orders', 'earliest', max_attempts => 2);
	SELECT count(*) FROM eventbus.publish_batch('orders',
	  (SELECT array_agg(jsonb_build_object('order_id', i)) FROM generate_series(1, 200) i),
	  (SELECT array_agg(CASE WHEN i % 50 = 0 THEN 'bad' ELSE 'customer-' || (i % 7) END)
	     FROM generate_series(1, 200) i));
});

my $script = "$ENV{EB_SRC}/examples/worker.py";
my $dsn = $node->connstr('postgres');
my (%out, @runs);
# 5 ms of simulated work per event keeps the first copy busy long enough
# for the second to start; without it one copy can finish everything alone.
foreach my $member ('w1', 'w2')
{
	$out{$member} = '';
	my $err = '';
	push @runs, [ $member, \$err,
		start([ $python, $script, $dsn, 'billing', 'orders', $member,
				'--batch', '17', '--fail-key', 'bad', '--delay', '0.005',
				'--idle-exit', '3' ],
			'>', \$out{$member}, '2>', \$err, timeout(120)) ];
}
foreach my $run (@runs)
{
	my ($member, $err, $h) = @$run;
	ok(finish($h), "worker $member exits cleanly") or diag($$err);
}

my %seen;
my $lines = 0;
foreach my $member (keys %out)
{
	foreach my $line (split /\n/, $out{$member})
	{
		next unless $line =~ /"order_id": (\d+)/;
		$seen{$1}++;
		$lines++;
	}
}
my @expected = grep { $_ % 50 != 0 } 1 .. 200;
is(scalar(grep { $seen{$_} } @expected), scalar(@expected), 'every good event was processed');
is(scalar(grep { $_ % 50 == 0 } keys %seen), 0, 'failing events were never reported as processed');
ok($out{w1} ne '' && $out{w2} ne '', 'both workers processed events');
cmp_ok($lines, '>=', scalar(@expected), 'at least once');

is($node->safe_psql('postgres',
	"SELECT sum(lag), sum(pending_retries), count(member) FROM eventbus.consumer_lag WHERE group_name = 'billing'"),
	'0|0|0', 'no lag, no pending retries, no leases left');
is($node->safe_psql('postgres', q{
	SELECT count(*), min(headers->>'eventbus-dlq-attempts'), min(headers->>'eventbus-dlq-reason')
	  FROM generate_series(0, 3) p, eventbus.read('orders.dlq', p)}),
	'4|2|refusing key bad', 'the four failing events were dead-lettered after two attempts');

$node->stop;
done_testing();
