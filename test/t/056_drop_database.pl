# Our workers never stand in the way of commands that need a database
# without connections, nor outlive the extension: with eventbus.database
# naming one database (the setting of earlier releases) and the Kafka relay
# running there (its slot active),
#
#  - CREATE DATABASE ... TEMPLATE of that database succeeds;
#  - DROP EXTENSION stops its workers and drops the relay's slot, and
#    CREATE EXTENSION starts them again;
#  - DROP DATABASE succeeds at once (no "being accessed by other users",
#    no "used by an active logical replication slot"), and leaves no slot.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'from-e:1');
my $bootstrap = $mock->bootstrap;
my $db = 'db_e';

my $node = relay_node(
	'drop_db',
	bootstrap => $bootstrap,
	start => 1,
	database => $db,
	conf => "max_worker_processes = 16\n");

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
		"SELECT coalesce(string_agg(slot_name || ':' || active, ','), '') FROM pg_replication_slots WHERE slot_name LIKE 'pg_eventbus_relay_%'"
	);
}

my $both = "$db:pg_eventbus relay,$db:pg_eventbus worker";
wait_workers($both, 'a database worker and a relay run in the database');
$node->safe_psql($db, q{
	SELECT eventbus.create_topic('t', 1);
	SELECT eventbus.relay_topic('t', 'from-e');
	SELECT eventbus.publish('t', '{"n": 1}');
});
is(scalar(@{ wait_for_kafka($bootstrap, 'from-e', 1) }), 1, 'the database relays');
like(slots(), qr/\Apg_eventbus_relay_\d+:true\z/, 'the relay slot is active');

# ---------------------------------------------------------------------------
# A copy of the database, with it as the template.

my ($rc, $out, $err) =
  $node->psql('postgres', "CREATE DATABASE copy_e TEMPLATE $db");
is($rc, 0, 'CREATE DATABASE ... TEMPLATE of a database with running workers succeeds')
  or diag($err);
wait_workers($both, 'its workers run again after the copy');
$node->safe_psql('postgres', 'DROP DATABASE copy_e');

# ---------------------------------------------------------------------------
# DROP EXTENSION, and CREATE EXTENSION again.

$node->safe_psql($db, 'DROP EXTENSION pg_eventbus CASCADE');
wait_workers('', 'after DROP EXTENSION no worker of ours runs in the database');
ok(poll_until(30, sub { slots() eq '' }),
	'... and the relay slot is dropped, retaining no WAL')
  or diag('slots: ' . slots());
$node->safe_psql($db, 'CREATE EXTENSION pg_eventbus');
wait_workers($both, 'after CREATE EXTENSION the workers run again');
ok(wait_relay_running($node, $db), 'the relay runs again, with a slot');

# ---------------------------------------------------------------------------
# DROP DATABASE.

($rc, $out, $err) = $node->psql('postgres', "DROP DATABASE $db");
is($rc, 0, 'DROP DATABASE of a database with running workers succeeds')
  or diag($err);
unlike($err, qr/being accessed by other users|active logical replication slot/,
	'... without "being accessed by other users" or an active slot');
is(slots(), '', 'no slot is left behind');
wait_workers('', 'no worker of ours runs');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/), 'no crash in the server log');
$node->stop;
done_testing();
