# A relay slot created anew while relayed topics already hold events
# (issue 10: what a promotion does on 15 and 16, which have no failover
# slots; here simulated by dropping the slot while the relay is stopped,
# which is what the new primary sees: the catalog says a slot existed, the
# slot is gone).
#
#  - The first slot of a database is created without a warning.
#  - After the slot was lost, the relay creates a new one and says that
#    events committed before it may be missing in Kafka: relay_status
#    (slot_created_at, slot_warning naming the relayed topic) and a
#    WARNING in the log with a hint to the resend procedure.  The events
#    committed while there was no slot are indeed not in Kafka, newer ones
#    are.
#  - resolve_relay_slot_warning() clears the warning (superusers only).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('newslot', bootstrap => $bootstrap, start => 1);
my $slot = $node->safe_psql('postgres', q{SELECT slot_name FROM eventbus.relay_status});

$node->safe_psql('postgres', q{
SELECT eventbus.create_topic('ev');
SELECT eventbus.relay_topic('ev');
SELECT count(*) FROM eventbus.publish_batch('ev', ARRAY(SELECT jsonb_build_object('phase', 'before', 'i', i) FROM generate_series(1, 5) i));
CREATE ROLE nobody LOGIN;
});
is(scalar(@{ wait_for_kafka($bootstrap, 'ev', 5) }), 5, 'relayed before the slot was lost');
my $st = relay_status($node);
ok(defined $st->{slot_created_at}, 'relay_status.slot_created_at is set');
ok(!defined $st->{slot_warning}, 'no warning for the first slot');
unlike(slurp_file($node->logfile), qr/existed before/, '... nor in the log');

sub set_brokers
{
	my ($value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET eventbus.kafka_brokers = '$value'");
	$node->reload;
}

# The slot is lost while the relay does not run, and events commit.
set_brokers('');
ok(poll_until(30, sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots WHERE active_pid IS NOT NULL}) eq '0' }),
	'the relay stopped');
$node->safe_psql('postgres', "SELECT pg_drop_replication_slot('$slot')");
$node->safe_psql('postgres', q{
SELECT count(*) FROM eventbus.publish_batch('ev', ARRAY(SELECT jsonb_build_object('phase', 'gap', 'i', i) FROM generate_series(1, 5) i));
});

my $log = -s $node->logfile;
set_brokers($bootstrap);
ok(wait_relay_running($node, 'postgres'), 'the relay runs again, with a new slot');
$st = relay_status($node);
like($st->{slot_warning} // '', qr/created anew at [0-9A-F]+\/[0-9A-F]+, replacing one created/,
	'relay_status.slot_warning says the slot is new and replaced one');
like($st->{slot_warning} // '', qr/relayed topics \(ev\)/, '... naming the relayed topic');
like($st->{slot_warning} // '', qr/may be missing in Kafka/, '... and what that means');
my $new_log = log_since($node, $log);
like($new_log, qr/WARNING:  pg_eventbus relay: replication slot "$slot" is new, but a slot of this database existed before/,
	'a WARNING in the log');
like($new_log, qr/HINT:  Send what Kafka may be missing again .* docs\/ha\.md/, '... with a hint to the resend procedure');

$node->safe_psql('postgres', q{SELECT eventbus.publish('ev', '{"phase": "after"}')});
my $msgs = wait_for_kafka($bootstrap, 'ev', 6);
my %phases;
$phases{ ($_->{value} =~ /"phase": "(\w+)"/)[0] }++ foreach @$msgs;
is($phases{after} // 0, 1, 'events after the new slot are relayed');
is($phases{gap} // 0, 0, 'events committed while there was no slot are not (what the warning says)');

my ($rc, $out, $err) = $node->psql('postgres', q{SET ROLE nobody; SELECT eventbus.resolve_relay_slot_warning()});
like($err, qr/permission denied for function (eventbus\.)?resolve_relay_slot_warning/, 'resolving is for superusers');
is($node->safe_psql('postgres', q{SELECT eventbus.resolve_relay_slot_warning()}), 't', 'resolve_relay_slot_warning() clears it');
ok(!defined relay_status($node)->{slot_warning}, '... relay_status has no warning');
is($node->safe_psql('postgres', q{SELECT eventbus.resolve_relay_slot_warning()}), 'f', '... and false once none is left');

ok(!$node->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
$node->stop;
$mock->stop;
done_testing();
