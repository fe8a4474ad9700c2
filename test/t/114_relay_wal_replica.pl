# PostgreSQL 19 and later: the relay works with wal_level = replica (issue
# 10).  From 19 core turns logical decoding on while a logical slot exists
# (effective_wal_level becomes logical), so the relay's slot is enough.
#
#  - wal_level = replica, effective_wal_level replica before the relay's
#    slot exists;
#  - the relay creates its slot and runs; effective_wal_level is logical;
#  - events of a relayed topic and an outbox message reach Kafka;
#  - dropping the slot (after stopping the relay) lets core switch logical
#    decoding off again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $probe = PostgreSQL::Test::Cluster->new('probe');
plan skip_all => 'logical decoding with wal_level = replica exists from PostgreSQL 19 on'
  if $probe->pg_version->major < 19;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1', '--topic', 'ob:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('replica', conf => "wal_level = replica\nmax_wal_senders = 4\n");
$node->start;
is($node->safe_psql('postgres', q{SELECT current_setting('wal_level') || ' ' || current_setting('effective_wal_level')}),
	'replica replica', 'wal_level and effective_wal_level are replica');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_eventbus');
$node->append_conf('postgresql.conf', "eventbus.kafka_brokers = '$bootstrap'\n");
$node->reload;
ok(wait_relay_running($node, 'postgres'), 'the relay runs with wal_level = replica');
is($node->safe_psql('postgres', q{SELECT current_setting('effective_wal_level')}),
	'logical', 'core turned logical decoding on for the relay slot');

$node->safe_psql('postgres', q{
SELECT eventbus.create_topic('ev');
SELECT eventbus.relay_topic('ev');
SELECT count(*) FROM eventbus.publish_batch('ev', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 5) i));
SELECT eventbus.outbox('ob', '{"outbox": true}');
});
is(scalar(@{ wait_for_kafka($bootstrap, 'ev', 5) }), 5, 'events are relayed');
is(scalar(@{ wait_for_kafka($bootstrap, 'ob', 1) }), 1, 'an outbox message is relayed');

my $slot = $node->safe_psql('postgres', q{SELECT slot_name FROM eventbus.relay_status});
$node->safe_psql('postgres', q{ALTER SYSTEM SET eventbus.kafka_brokers = ''});
$node->reload;
ok(poll_until(30, sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots WHERE active_pid IS NOT NULL}) eq '0' }),
	'the relay stopped');
$node->safe_psql('postgres', "SELECT eventbus.drop_relay_slot('$slot')");
ok(poll_until(60, sub {
	$node->safe_psql('postgres', q{CHECKPOINT; SELECT current_setting('effective_wal_level')}) eq 'replica' }),
	'without the slot, core switches logical decoding off again');

ok(!$node->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
$node->stop;
$mock->stop;
done_testing();
