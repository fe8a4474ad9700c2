# A relay slot invalidated by core is reported and never silently replaced
# (issue 10).
#
#  - max_slot_wal_keep_size, while the relay is stalled (the broker is
#    down, messages in flight): the slot is invalidated; relay_status says
#    so (slot_invalidation_reason 'wal_removed', state 'waiting', last_error
#    with the recovery), relay_slots too; the relay waits, also once the
#    broker is back, and creates no new slot by itself.
#  - Recovery as documented: drop_relay_slot() accepts the invalidated slot
#    (it refuses a valid one, see 110), the relay creates a new one and
#    warns that events may be missing in Kafka; new events are relayed.
#  - 18+: idle_replication_slot_timeout invalidates the slot of a stopped
#    relay; reported as 'idle_timeout' the same way.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('invalidated', bootstrap => $bootstrap, start => 1,
	conf => "max_slot_wal_keep_size = 1MB\nmax_wal_size = 64MB\n");
my $major = $node->pg_version->major;
my $slot = $node->safe_psql('postgres', q{SELECT slot_name FROM eventbus.relay_status});

$node->safe_psql('postgres', q{
SELECT eventbus.create_topic('ev');
SELECT eventbus.relay_topic('ev');
SELECT eventbus.publish('ev', '{"phase": "before"}');
CREATE TABLE filler (x text);
});
is(scalar(@{ wait_for_kafka($bootstrap, 'ev', 1) }), 1, 'relaying');

# Stall the relay with messages in flight, then write WAL past the limit.
is($mock->command('down 1'), 'ok', 'broker down');
$node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.publish_batch('ev', ARRAY(SELECT jsonb_build_object('phase', 'stalled', 'i', i) FROM generate_series(1, 5) i))});
ok(poll_until(30, sub {
	$node->safe_psql('postgres', q{SELECT messages_in_flight > 0 FROM eventbus.relay_status}) eq 't' }),
	'the relay has messages in flight');
my $log = -s $node->logfile;
ok(poll_until(90, sub {
	$node->safe_psql('postgres', q{
INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 3000);
SELECT pg_switch_wal();
CHECKPOINT;
});
	$node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.relay_slots WHERE invalidation_reason IS NOT NULL}) eq '1';
}, 500), 'max_slot_wal_keep_size invalidated the slot');

ok(poll_until(30, sub {
	$node->safe_psql('postgres', q{SELECT state FROM eventbus.relay_status}) eq 'waiting' }),
	'the relay waits');
my $st = relay_status($node);
is($st->{slot_invalidation_reason}, 'wal_removed', 'relay_status.slot_invalidation_reason');
like($st->{last_error} // '', qr/replication slot "$slot" was invalidated \(wal_removed\)/, 'last_error says so');
like($st->{last_error} // '', qr/never replaces the slot by itself.*drop_relay_slot/, '... and how to recover');
like($node->safe_psql('postgres', q{SELECT status FROM eventbus.relay_slots}), qr/^invalidated \(wal_removed\)/,
	'relay_slots.status too');
is($node->safe_psql('postgres', q{SELECT wal_status FROM pg_replication_slots WHERE slot_name LIKE 'pg_eventbus_relay_%'}),
	'lost', 'core says lost');

is($mock->command('up 1'), 'ok', 'broker up');
sleep(3);
is($node->safe_psql('postgres', q{SELECT state || ' ' || slot_invalidation_reason FROM eventbus.relay_status}),
	'waiting wal_removed', 'with the broker back the relay still waits on the same slot');
unlike(log_since($node, $log), qr/creating replication slot/, 'no new slot was created');

# Recovery: drop the invalidated slot; the relay starts over and warns.
$node->safe_psql('postgres', "SELECT eventbus.drop_relay_slot('$slot')");
ok(wait_relay_running($node, 'postgres'), 'after drop_relay_slot() the relay runs with a new slot');
$st = relay_status($node);
ok(!defined $st->{slot_invalidation_reason}, 'the new slot is valid');
like($st->{slot_warning} // '', qr/may be missing in Kafka/, 'and the warning says events may be missing');
$node->safe_psql('postgres', q{SELECT eventbus.publish('ev', '{"phase": "after"}')});
ok(poll_until(30, sub {
	my $m = kafka_read($bootstrap, 'ev');
	$m && grep { $_->{value} =~ /"after"/ } @$m }), 'new events are relayed');

SKIP:
{
	skip 'idle_replication_slot_timeout exists from 18 on', 3 if $major < 18;
	$node->safe_psql('postgres', q{ALTER SYSTEM SET eventbus.kafka_brokers = ''});
	$node->reload;
	ok(poll_until(30, sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots WHERE active_pid IS NOT NULL}) eq '0' }),
		'the relay stopped');
	$node->safe_psql('postgres', q{ALTER SYSTEM SET idle_replication_slot_timeout = '1s'});
	$node->reload;
	ok(poll_until(60, sub {
		$node->safe_psql('postgres', q{INSERT INTO filler VALUES ('x'); CHECKPOINT;});
		$node->safe_psql('postgres', q{SELECT invalidation_reason FROM eventbus.relay_slots}) eq 'idle_timeout';
	}, 500), 'idle_replication_slot_timeout invalidated the stopped relay\'s slot');
	$node->safe_psql('postgres', qq{ALTER SYSTEM SET eventbus.kafka_brokers = '$bootstrap'});
	$node->reload;
	ok(poll_until(30, sub {
		my $s = relay_status($node);
		($s->{state} // '') eq 'waiting' && ($s->{last_error} // '') =~ /invalidated \(idle_timeout\)/ }),
		'the relay waits and says why');
}

ok(!$node->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
$node->stop;
$mock->stop;
done_testing();
