# The relay's replication slots are never orphaned unseen (issue 10).
#
#  - eventbus.relay_slots (and relay_status.slots) lists every pg_eventbus
#    slot of the cluster with its database, the process using it, restart
#    LSN and retained WAL; from 17 on the slot is a failover slot.
#  - drop_relay_slot(): superusers only; refuses a name that is not a relay
#    slot, an unknown slot, a slot in use, and the slot of the relay the
#    settings ask for.
#  - Clearing eventbus.kafka_brokers: the slot stays (setting the brokers
#    again continues from it, not from a new slot) and is listed as an
#    orphan while no relay runs, with the WAL it retains.
#  - Moving the relay to another database (eventbus.database): the old slot
#    is listed as an orphan there and drop_relay_slot() drops it.
#  - DROP EXTENSION: rolled back (also in a savepoint) the slot stays;
#    committed while the relay runs, the relay drops the slot; committed
#    while no relay runs, the slot is dropped at commit.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1');
my $bootstrap = $mock->bootstrap;
# The relay serves postgres only until it is moved (eventbus.database).
my $node = relay_node('slots', bootstrap => $bootstrap, start => 1, database => 'postgres');
my $major = $node->pg_version->major;

$node->safe_psql('postgres', q{
SELECT eventbus.create_topic('ev');
SELECT eventbus.relay_topic('ev');
SELECT eventbus.publish('ev', '{"n": 1}');
CREATE ROLE nobody LOGIN;
});
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION pg_eventbus');

sub oid_of
{
	my ($db) = @_;
	return $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = '$db'");
}
my $slot = 'pg_eventbus_relay_' . oid_of('postgres');
my $other_slot = 'pg_eventbus_relay_' . oid_of('other');

sub slots
{
	my ($db) = @_;
	return $node->safe_psql($db // 'postgres',
		q{SELECT slot_name || ' ' || coalesce(database::text, '-') || ' '
		        || (active_pid IS NOT NULL) || ' ' || orphaned || ' '
		        || (restart_lsn IS NOT NULL) || ' ' || (wal_retained_bytes >= 0)
		  FROM eventbus.relay_slots ORDER BY database});
}

sub set_config
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $name = '$value'");
	$node->reload;
}

sub relay_pid
{
	return $node->safe_psql('postgres',
		q{SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'pg_eventbus relay'});
}

# --- listing ---
is(slots(), "$slot postgres true false true true", 'relay_slots lists the relay slot, in use, not orphaned');
is($node->safe_psql('other', q{SELECT jsonb_array_length(slots) FROM eventbus.relay_status}),
	'1', 'relay_status.slots lists it from another database too');
is($node->safe_psql('postgres', q{SELECT slot_failover FROM eventbus.relay_status}),
	$major >= 17 ? 't' : 'f', 'a failover slot from 17 on');
is($node->safe_psql('postgres', q{SELECT failover FROM pg_replication_slots WHERE slot_name LIKE 'pg_eventbus_relay_%'}),
	't', '... as pg_replication_slots says') if $major >= 17;
my $created_at = $node->safe_psql('postgres', q{SELECT slot_created_at FROM eventbus.relay_status});
isnt($created_at, '', 'relay_status.slot_created_at is set');

# --- drop_relay_slot refusals ---
my ($rc, $out, $err) = $node->psql('postgres', "SELECT eventbus.drop_relay_slot('$slot')");
like($err, qr/ERROR:  replication slot "$slot" is in use by process \d+/, 'the slot in use is refused');
($rc, $out, $err) = $node->psql('postgres', q{SELECT eventbus.drop_relay_slot('someone_else')});
like($err, qr/ERROR:  "someone_else" is not the name of a pg_eventbus relay slot/, 'other slots are refused');
($rc, $out, $err) = $node->psql('postgres', q{SELECT eventbus.drop_relay_slot('pg_eventbus_relay_1')});
like($err, qr/ERROR:  replication slot "pg_eventbus_relay_1" does not exist/, 'an unknown slot is refused');
($rc, $out, $err) = $node->psql('postgres', "SET ROLE nobody; SELECT eventbus.drop_relay_slot('$slot')");
like($err, qr/ERROR:  permission denied for function (eventbus\.)?drop_relay_slot/, 'non-superusers are refused');

# --- clearing eventbus.kafka_brokers ---
my $log = -s $node->logfile;
set_config('eventbus.kafka_brokers', '');
ok(poll_until(30, sub { relay_pid() eq '0' }), 'the relay stops when the brokers are cleared');
is(slots(), "$slot postgres false true true true",
	'the slot stays, listed as an orphan with the WAL it retains');
like($node->safe_psql('postgres', "SELECT status FROM eventbus.relay_slots"),
	qr/eventbus\.kafka_brokers is empty/, '... saying why');
($rc, $out, $err) = $node->psql('other', "SELECT eventbus.drop_relay_slot('$other_slot')");
like($err, qr/does not exist/, 'no slot in the other database yet');
# 17+: a slot without failover (as made by an older major before
# pg_upgrade) is switched to failover when the relay starts with it.
if ($major >= 17)
{
	$node->safe_psql('postgres', "SELECT pg_drop_replication_slot('$slot')");
	# (servers with output_plugin_libraries allow the plugin per session)
	$node->safe_psql('postgres', qq{
SELECT set_config('output_plugin_libraries', 'pg_eventbus', false)
  FROM pg_settings WHERE name = 'output_plugin_libraries';
SELECT pg_create_logical_replication_slot('$slot', 'pg_eventbus', false, false, false);});
	is($node->safe_psql('postgres', "SELECT failover FROM pg_replication_slots WHERE slot_name = '$slot'"),
		'f', '17+: a slot without failover');
}
set_config('eventbus.kafka_brokers', $bootstrap);
ok(wait_relay_running($node, 'postgres'), 'the relay runs again with the brokers set');
if ($major >= 17)
{
	is($node->safe_psql('postgres', "SELECT failover FROM pg_replication_slots WHERE slot_name = '$slot'"),
		't', '... the relay switched it to failover');
	like(log_since($node, $log), qr/replication slot "$slot" is now a failover slot/, '... and logged it');
}
is($node->safe_psql('postgres', q{SELECT slot_created_at FROM eventbus.relay_status}),
	$created_at, '... from the same slot');
unlike(log_since($node, $log), qr/creating replication slot/, '... not a new one');

# --- moving the relay to another database ---
set_config('eventbus.database', 'other');
ok(poll_until(30, sub {
	$node->safe_psql('other', "SELECT count(*) FROM eventbus.relay_slots WHERE slot_name = '$other_slot' AND active_pid IS NOT NULL") eq '1' }),
	'the relay runs in the other database with its own slot');
# the relay of postgres stops on its own time
ok(poll_until(30, sub {
	slots('other') eq "$other_slot other true false true true\n$slot postgres false true true true" }),
	'the old slot is listed as an orphan');
like($node->safe_psql('other', "SELECT status FROM eventbus.relay_slots WHERE slot_name = '$slot'"),
	qr/eventbus.database \("other"\) does not list database "postgres"/, '... saying why');
($rc, $out, $err) = $node->psql('other', "SELECT eventbus.drop_relay_slot('$other_slot')");
like($err, qr/in use by process/, 'the new slot in use is refused');
$node->safe_psql('other', "SELECT eventbus.drop_relay_slot('$slot')");
is(slots('other'), "$other_slot other true false true true", 'drop_relay_slot() dropped the orphan');

# --- DROP EXTENSION ---
$node->safe_psql('other', q{BEGIN; DROP EXTENSION pg_eventbus; ROLLBACK;});
$node->safe_psql('other', q{BEGIN; SAVEPOINT s; DROP EXTENSION pg_eventbus; ROLLBACK TO s; COMMIT;});
sleep(3);    # longer than the relay's check for the extension
is($node->safe_psql('other', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$other_slot'"),
	'1', 'a rolled-back DROP EXTENSION keeps the slot');
ok(poll_until(30, sub {
	$node->safe_psql('other', q{SELECT count(*) FROM eventbus.relay_slots WHERE active_pid IS NOT NULL}) eq '1' }),
	'... and the relay keeps using it');
$node->safe_psql('other', q{DROP EXTENSION pg_eventbus});
ok(poll_until(30, sub {
	$node->safe_psql('other', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$other_slot'") eq '0' }),
	'DROP EXTENSION while the relay runs: the relay drops the slot');

# The relay back in postgres, stopped: DROP EXTENSION there drops the
# slot at commit.
set_config('eventbus.database', 'postgres');
ok(wait_relay_running($node, 'postgres'), 'the relay runs in postgres again');
set_config('eventbus.kafka_brokers', '');
ok(poll_until(30, sub { relay_pid() eq '0' }), 'the relay stops');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'"),
	'1', 'its slot is there');
$node->safe_psql('postgres', q{BEGIN; DROP EXTENSION pg_eventbus CASCADE; SAVEPOINT a; RELEASE a; COMMIT;});
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'"),
	'0', 'DROP EXTENSION with no relay running dropped the slot at commit');
like(slurp_file($node->logfile), qr/dropped replication slot "$slot" after DROP EXTENSION/, '... and logged it');

ok(!$node->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
$node->stop;
$mock->stop;
done_testing();
