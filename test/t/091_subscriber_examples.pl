# The LISTEN subscriber examples (examples/subscriber.py with Debian's
# psycopg, examples/node/subscriber.js with npm's pg) consume every event of
# a stream of commits exactly once, woken by notifications.
use strict;
use warnings;
use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish timeout run);

my $node = PostgreSQL::Test::Cluster->new('subscribers');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.database = 'postgres'
eventbus.notify_interval = 20ms
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('orders', 3);
	CREATE PROCEDURE burst(n int, tag text) LANGUAGE plpgsql AS $$
	BEGIN
	  FOR i IN 1 .. n LOOP
	    PERFORM eventbus.publish('orders', jsonb_build_object('tag', tag, 'i', i), key => 'k' || (i % 7));
	    COMMIT;
	    PERFORM pg_sleep(0.002);
	  END LOOP;
	END $$;
});
$node->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_eventbus worker'", '1')
  or die 'no database worker';
my $dsn = $node->connstr('postgres');

# Starts a subscriber, publishes 300 events in separate transactions while it
# runs, and checks that it printed each exactly once.
sub check_subscriber
{
	my ($name, $cmd, %env) = @_;
	my $group = "g_$name";
	$node->safe_psql('postgres', "SELECT eventbus.create_group('$group', 'orders', 'latest')");
	my ($out, $err) = ('', '');
	local @ENV{ keys %env } = values %env;
	my $h = start($cmd->($group), '>', \$out, '2>', \$err, timeout(120));
	sleep 1;
	$node->safe_psql('postgres', "CALL burst(300, '$name')");
	ok(finish($h), "$name subscriber exits cleanly") or diag($err);
	my %seen;
	foreach my $line (split /\n/, $out)
	{
		next unless $line =~ /"tag": ?"\Q$name\E"/;
		$seen{$1}++ if $line =~ /"i": ?(\d+)/;
	}
	is(scalar(keys %seen), 300, "$name subscriber received all 300 events");
	is(scalar(grep { $seen{$_} != 1 } keys %seen), 0, "$name subscriber received each once");
	is($node->safe_psql('postgres', "SELECT sum(lag) FROM eventbus.consumer_lag WHERE group_name = '$group'"),
		'0', "$name subscriber's group has no lag");
}

SKIP:
{
	skip 'Debian python3-psycopg is not installed', 4
	  unless system(q{/usr/bin/python3 -c 'import psycopg' 2>/dev/null}) == 0;
	check_subscriber('python', sub {
		[ '/usr/bin/python3', "$ENV{EB_SRC}/examples/subscriber.py", $dsn, $_[0], 'orders',
		  '--exit-after', '3' ] });
}

SKIP:
{
	my $dir = PostgreSQL::Test::Utils::tempdir;
	my $npm_ok = system('command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1') == 0;
	if ($npm_ok)
	{
		copy("$ENV{EB_SRC}/examples/node/$_", "$dir/$_") for ('subscriber.js', 'package.json');
		my ($o, $e) = ('', '');
		$npm_ok = run([ 'npm', 'install', '--no-audit', '--no-fund', '--silent',
						'--cache', "$dir/.npm", '--prefix', $dir ],
			'>', \$o, '2>', \$e, timeout(180));
		diag("npm install failed: $e") unless $npm_ok;
	}
	skip 'node and the npm package pg are not available', 4 unless $npm_ok;
	# node-pg reads the PG* variables when given an empty connection string
	check_subscriber('node', sub { [ 'node', "$dir/subscriber.js", '', $_[0], 'orders' ] },
		EXIT_AFTER_MS => 3000, NODE_PATH => "$dir/node_modules",
		PGHOST => $node->host, PGPORT => $node->port, PGDATABASE => 'postgres',
		PGUSER => scalar(getpwuid($<)));
}

$node->stop;
done_testing();
