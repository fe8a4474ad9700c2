# Upgrades: a database installed at 0.1.0 (the first released install
# script, sql/pg_eventbus--0.1.0.sql) is updated with ALTER EXTENSION
# pg_eventbus UPDATE.
#
#  - This library serves 0.1.0 objects until the update: topics, events,
#    groups and a relay mapping are made with them (and relayed).
#  - After the update everything keeps working: positions, committed group
#    offsets, reading, publishing and relaying go on where they were.
#  - The updated extension's objects equal a fresh install's: pg_dump
#    --schema-only --binary-upgrade (which lists every member object of the
#    extension) of an updated database and of a fresh one are the same, but
#    for OIDs.
#  - Objects of a version the library does not serve get a clear error and
#    a hint, not a misread catalog.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $db = 'postgres';
my $mock = RelayTest::MockKafka->start('--topic', 'up.orders:2');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('upgrade', bootstrap => $bootstrap);
$node->start;

my $current = $node->safe_psql($db,
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'pg_eventbus'});
isnt($current, '0.1.0', "the current version ($current) is not 0.1.0");

# --- 0.1.0 objects, served by this library --------------------------------
$node->safe_psql($db, q{CREATE EXTENSION pg_eventbus VERSION '0.1.0'});
is($node->safe_psql($db,
	q{SELECT extversion FROM pg_extension WHERE extname = 'pg_eventbus'}),
	'0.1.0', 'installed at 0.1.0');

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('orders', 2, '7 days');
SELECT eventbus.create_group('billing', 'orders', 'earliest');
SELECT eventbus.publish('orders', jsonb_build_object('n', g), 'k' || (g % 3))
  FROM generate_series(1, 10) g;
});
my ($ret, $out, $err);
my $first = $node->safe_psql($db,
	q{SELECT count(*) FROM eventbus.poll('billing', 'orders', 4, commit => true)});
is($first, '4', '0.1.0: a group polls and commits');

ok(RelayTest::wait_relay_running($node, $db), 'the relay runs on 0.1.0 objects');
$node->safe_psql($db, q{SELECT eventbus.relay_topic('orders', 'up.orders')});
$node->safe_psql($db,
	q{SELECT eventbus.publish('orders', jsonb_build_object('r', g), 'k' || g)
	  FROM generate_series(1, 5) g});
ok(RelayTest::wait_for_kafka($bootstrap, 'up.orders', 5, 60),
	'0.1.0: a relayed topic reaches Kafka');

my $positions_before = $node->safe_psql($db,
	q{SELECT string_agg(partition || ':' || position || ':' || event_id, ',' ORDER BY partition, position)
	  FROM eventbus_data.orders});

# --- update ---------------------------------------------------------------
$node->safe_psql($db, q{ALTER EXTENSION pg_eventbus UPDATE});
is($node->safe_psql($db,
	q{SELECT extversion FROM pg_extension WHERE extname = 'pg_eventbus'}),
	$current, "updated to $current");

is($node->safe_psql($db,
	q{SELECT string_agg(partition || ':' || position || ':' || event_id, ',' ORDER BY partition, position)
	  FROM eventbus_data.orders}),
	$positions_before, 'events keep their positions and ids');
is($node->safe_psql($db,
	q{SELECT count(*) FROM eventbus.poll('billing', 'orders', 100, commit => true)}),
	'11', 'the group goes on after its committed offsets (15 - 4 events)');
is($node->safe_psql($db,
	q{SELECT (SELECT count(*) FROM eventbus.read('orders', 0))
	       + (SELECT count(*) FROM eventbus.read('orders', 1))}),
	'15', 'read() returns every event');
is($node->safe_psql($db, q{SELECT relayed_to FROM eventbus.topics WHERE topic = 'orders'}),
	'up.orders', 'the relay mapping survives');
$node->safe_psql($db,
	q{SELECT eventbus.publish('orders', '{"after": true}', 'k1')});
ok(RelayTest::wait_for_kafka($bootstrap, 'up.orders', 6, 60),
	'publishing and relaying go on after the update');
is($node->safe_psql($db,
	q{SELECT count(*) FROM eventbus.poll('billing', 'orders', 100, commit => true)}),
	'1', 'the group receives the event published after the update');
$node->safe_psql($db,
	q{SELECT eventbus.create_topic('later'); SELECT eventbus.publish('later', '{}')});

# What the update added works on the updated objects.
is($node->safe_psql($db,
	q{SELECT eventbus.register_schema('later', '{"type": "object", "required": ["id"]}')}),
	'1', 'register_schema() after the update');
($ret, $out, $err) = $node->psql($db, q{SELECT eventbus.publish('later', '{"x": 1}')});
like($err, qr/ERROR:  \$: /, '... and publish validates against it');
$node->safe_psql($db,
	q{SELECT eventbus.relay_topic('orders', 'up.orders', format => 'cloudevents')});
is($node->safe_psql($db, q{SELECT format FROM eventbus.relay_format f JOIN eventbus.topic t USING (topic_id) WHERE t.topic = 'orders'}),
	'cloudevents', 'relay_topic(format => ...) after the update');
cmp_ok($node->safe_psql($db, q{SELECT published FROM eventbus.topic_stats WHERE topic = 'later'}),
	'>=', 1, 'topic_stats after the update');
is($node->safe_psql($db,
	q{SELECT consumed >= 12, dead_lettered, stats_reset IS NOT NULL FROM eventbus.group_stats WHERE group_name = 'billing'}),
	't|0|t', 'group_stats after the update: counted from the update on (12 events consumed since)');

# --- updated objects equal a fresh install's -------------------------------
$node->safe_psql($db, q{CREATE DATABASE updated; CREATE DATABASE fresh});
$node->safe_psql('updated', q{CREATE EXTENSION pg_eventbus VERSION '0.1.0'});
$node->safe_psql('updated', q{ALTER EXTENSION pg_eventbus UPDATE});
$node->safe_psql('fresh', q{CREATE EXTENSION pg_eventbus});

sub schema_dump
{
	my ($dbname) = @_;
	my ($stdout, $stderr);
	IPC::Run::run(
		[
			'pg_dump', '--schema-only', '--binary-upgrade', '--no-comments',
			'-d', $node->connstr($dbname)
		],
		'>', \$stdout, '2>', \$stderr)
	  or die "pg_dump $dbname failed: $stderr";
	# OIDs and transaction ids differ between databases; so do the dump's
	# own header lines.
	my @lines = grep {
		!/binary_upgrade_set_next_|relfrozenxid|^-- Dumped (from|by)|^\\(un)?restrict /
	} split /\n/, $stdout;
	s/\d{5,}/OID/g for grep { /binary_upgrade_create_empty_extension|^WHERE oid = / } @lines;
	return join("\n", @lines) . "\n";
}

# Equal texts pass; different ones fail with their diff.
sub same_text
{
	my ($got, $expected, $name) = @_;
	if ($got eq $expected)
	{
		pass($name);
		return;
	}
	my $tmp = PostgreSQL::Test::Utils::tempdir();
	open my $e, '>', "$tmp/expected" or die;
	print $e $expected;
	close $e;
	open my $g, '>', "$tmp/got" or die;
	print $g $got;
	close $g;
	fail($name);
	diag(`diff -u $tmp/expected $tmp/got`);
}

# Comments are compared separately: --no-comments keeps the dump readable
# and the comments are checked from the catalog.
my $fresh_dump = schema_dump('fresh');
like($fresh_dump, qr/ALTER EXTENSION pg_eventbus ADD/,
	'the binary-upgrade dump lists the extension\'s member objects');
same_text(schema_dump('updated'), $fresh_dump,
	'pg_dump of the updated extension equals a fresh install');

my $comments_sql = q{
SELECT string_agg(line, E'\n' ORDER BY line)
  FROM (SELECT format('%s %s: %s', d.classoid::regclass,
                      pg_describe_object(d.classoid, d.objoid, d.objsubid), description) AS line
          FROM pg_description d
          JOIN pg_depend e ON e.classid = d.classoid AND e.objid = d.objoid AND e.deptype = 'e'
         WHERE e.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_eventbus')) s
};
same_text($node->safe_psql('updated', $comments_sql) . "\n",
	$node->safe_psql('fresh', $comments_sql) . "\n",
	'the updated extension\'s comments equal a fresh install\'s');

# --- a version the library does not serve ----------------------------------
$node->safe_psql('updated',
	q{UPDATE pg_extension SET extversion = '0.0.9' WHERE extname = 'pg_eventbus'});
($ret, $out, $err) = $node->psql('updated', q{SELECT eventbus.create_topic('x')});
like($err,
	qr/ERROR:  extension "pg_eventbus" is at version 0\.0\.9 in this database, which its library \(version \Q$current\E\) does not support/,
	'objects of an unknown version are refused');
like($err, qr/HINT:  Install the library of version 0\.0\.9, or update the extension/,
	'... with a hint');
$node->safe_psql('updated',
	qq{UPDATE pg_extension SET extversion = '$current' WHERE extname = 'pg_eventbus'});
$node->safe_psql('updated', q{SELECT eventbus.create_topic('x')});

$node->stop;
$mock->stop;
done_testing();
