# Every database: one launcher serves every database where the extension
# is installed, without eventbus.database.
#
#  - Two databases created after the server started, the extension
#    created in both: each gets its database worker and its relay worker,
#    relays its own topic to its own Kafka topic through its own slot
#    (relay_status in each shows that database's slot), wakes LISTEN
#    subscribers, and has its segments rotated and dropped by retention.
#  - DROP EXTENSION stops the workers of that database and drops its relay
#    slot (no slot left retaining WAL); CREATE EXTENSION again brings them
#    back.
#  - DROP DATABASE of a database whose workers run (the relay holding its
#    slot) succeeds at once.
# 056_drop_database.pl and 057_database_quota.pl test the rest.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'from-a:1', '--topic', 'from-b:1');
my $bootstrap = $mock->bootstrap;

my $node = relay_node(
	'every_db',
	bootstrap => $bootstrap,
	conf => qq{
max_replication_slots = 8
max_worker_processes = 16
eventbus.maintenance_naptime = 200ms
eventbus.notify_interval = 10ms
});
$node->start;

# "database:type" of the pg_eventbus processes connected to a database.
sub workers
{
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(datname || ':' || backend_type, ',' ORDER BY datname, backend_type), '') FROM pg_stat_activity WHERE backend_type IN ('pg_eventbus worker', 'pg_eventbus relay')"
	);
}

sub wait_workers
{
	my ($expected, $what) = @_;
	my $got;
	my $ok = poll_until(30, sub { ($got = workers()) eq $expected });
	ok($ok, $what) or diag("workers: '$got', expected '$expected'");
}

sub slots
{
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(d.datname, ',' ORDER BY d.datname), '') FROM pg_replication_slots s JOIN pg_database d ON s.datoid = d.oid WHERE s.slot_name LIKE 'pg_eventbus_relay_%'"
	);
}

foreach my $db (qw(db_a db_b))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION pg_eventbus');
}
wait_workers(
	'db_a:pg_eventbus relay,db_a:pg_eventbus worker,db_b:pg_eventbus relay,db_b:pg_eventbus worker',
	'a database worker and a relay in each database created after the start');
foreach my $db (qw(db_a db_b))
{
	ok(wait_relay_running($node, $db), "the relay of $db runs");
}

# ---------------------------------------------------------------------------
# Relaying from both.

my %oid;
foreach my $db (qw(db_a db_b))
{
	my $suffix = substr($db, 3);
	$oid{$db} = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = '$db'");
	$node->safe_psql($db, qq{
		SELECT eventbus.create_topic('t', 2, retention => '1 second');
		SELECT eventbus.relay_topic('t', 'from-$suffix');
		SELECT eventbus.publish('t', jsonb_build_object('db', '$db', 'i', i)) FROM generate_series(1, 5) i;
	});
	is(relay_status($node, $db)->{slot_name}, "pg_eventbus_relay_$oid{$db}",
		"relay_status in $db shows the slot of $db");
}
foreach my $db (qw(db_a db_b))
{
	my $suffix = substr($db, 3);
	my $msgs = wait_for_kafka($bootstrap, "from-$suffix", 5);
	is(scalar(grep { $_->{value} =~ /"db": "$db"/ } @$msgs), 5,
		"the five events of $db reached Kafka topic from-$suffix");
	is(scalar(@$msgs), 5, "... and nothing else did");
}
is(slots(), 'db_a,db_b', 'one relay slot per database');
foreach my $db (qw(db_a db_b))
{
	ok( poll_until(10, sub { (relay_status($node, $db)->{events_relayed} // 0) == 5 }),
		"relay_status in $db counts the events of $db only");
}

# ---------------------------------------------------------------------------
# LISTEN in both.

foreach my $db (qw(db_a db_b))
{
	my $listener = $node->background_psql($db);
	$listener->query_safe('LISTEN "eventbus.t"');
	$node->safe_psql($db, q{SELECT eventbus.publish('t', '{"n": "wake"}')});
	my $got = '';
	poll_until(
		10,
		sub {
			$got .= $listener->query_safe('SELECT 1');
			return $got =~ /Asynchronous notification "eventbus\.t"/;
		},
		50);
	like($got, qr/Asynchronous notification "eventbus\.t" with payload "\{"topic": "t"/,
		"a LISTEN subscriber in $db is woken");
	$listener->quit;
}

# ---------------------------------------------------------------------------
# Retention in both: segments rotate, and the expired ones are dropped.

foreach my $db (qw(db_a db_b))
{
	ok( poll_until(
			30,
			sub {
				$node->safe_psql($db,
					"SELECT min(segment) > 1 AND max(segment) > 2 FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id) WHERE t.topic = 't'"
				) eq 't';
			}),
		"maintenance in $db rotated segments and dropped the expired first one");
}

# ---------------------------------------------------------------------------
# DROP EXTENSION stops the workers there and drops the relay slot; CREATE
# EXTENSION brings them back.

$node->safe_psql('db_b', 'DROP EXTENSION pg_eventbus CASCADE');
wait_workers('db_a:pg_eventbus relay,db_a:pg_eventbus worker',
	'after DROP EXTENSION in db_b, its workers are gone');
ok(poll_until(30, sub { slots() eq 'db_a' }),
	'... and so is its relay slot (no WAL retained for nobody)')
  or diag('slots: ' . slots());
$node->safe_psql('db_b', 'CREATE EXTENSION pg_eventbus');
wait_workers(
	'db_a:pg_eventbus relay,db_a:pg_eventbus worker,db_b:pg_eventbus relay,db_b:pg_eventbus worker',
	'CREATE EXTENSION in db_b again: its workers are back');

# ---------------------------------------------------------------------------
# A database created later, then dropped while its workers run.

$node->safe_psql('postgres', 'CREATE DATABASE db_c');
$node->safe_psql('db_c', 'CREATE EXTENSION pg_eventbus');
wait_workers(
	'db_a:pg_eventbus relay,db_a:pg_eventbus worker,db_b:pg_eventbus relay,db_b:pg_eventbus worker,db_c:pg_eventbus relay,db_c:pg_eventbus worker',
	'a database created later gets its workers once the extension is created');
ok(wait_relay_running($node, 'db_c'), 'the relay of db_c runs (its slot active)');

my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE db_c');
is($rc, 0, 'DROP DATABASE of a database with running workers succeeds')
  or diag($err);
unlike($err, qr/being accessed by other users|active logical replication slot/,
	'... without "being accessed by other users"');
wait_workers(
	'db_a:pg_eventbus relay,db_a:pg_eventbus worker,db_b:pg_eventbus relay,db_b:pg_eventbus worker',
	'the other databases keep their workers');
is(slots(), 'db_a,db_b', 'the dropped database left no slot');

ok(!$node->log_contains(qr/being accessed by other users|TRAP:|terminated by signal|PANIC/),
	'no refused DROP DATABASE and no crash in the server log');
$node->stop;
done_testing();
