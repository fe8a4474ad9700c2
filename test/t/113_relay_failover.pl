# PostgreSQL 17 and later: the relay slot is a failover slot, and a
# promotion in the middle of relaying loses nothing (issue 10).
#
# A primary relays to the mock Kafka cluster; a physical standby
# synchronizes failover slots (sync_replication_slots, hot_standby_feedback,
# primary_slot_name, dbname in primary_conninfo) and the primary waits for
# it (synchronized_standby_slots).  Checked:
#  - the relay slot is a failover slot; no relay runs on the standby;
#  - the synchronized copy on the standby follows the primary's;
#  - events are published continuously, the primary is stopped
#    (immediate) and the standby promoted: the relay starts on the new
#    primary and continues from the synchronized slot (no new slot, no
#    warning), new events are relayed;
#  - every event committed on the new primary is in Kafka (duplicates
#    allowed: at-least-once), and Kafka holds no event the new primary
#    does not have (the relay sends only what the standby confirmed).

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $primary = PostgreSQL::Test::Cluster->new('primary');
plan skip_all => 'failover slots exist from PostgreSQL 17 on'
  if $primary->pg_version->major < 17;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:2');
my $bootstrap = $mock->bootstrap;

$primary->init(allows_streaming => 'logical');
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
max_replication_slots = 6
eventbus.kafka_brokers = '$bootstrap'
});
$primary->start;
$primary->safe_psql('postgres', q{
SELECT pg_create_physical_replication_slot('standby_slot', true);
CREATE EXTENSION pg_eventbus;
});
ok(wait_relay_running($primary, 'postgres'), 'the relay runs on the primary');
$primary->safe_psql('postgres', q{
SELECT eventbus.create_topic('ev', 2);
SELECT eventbus.relay_topic('ev');
});
my $slot = $primary->safe_psql('postgres', q{SELECT slot_name FROM eventbus.relay_status});
is($primary->safe_psql('postgres', "SELECT failover FROM pg_replication_slots WHERE slot_name = '$slot'"),
	't', 'the relay slot is a failover slot');
my $created_at = $primary->safe_psql('postgres', q{SELECT slot_created_at FROM eventbus.relay_status});

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
my $connstr = $primary->connstr;
$standby->append_conf('postgresql.conf', qq{
primary_slot_name = 'standby_slot'
primary_conninfo = '$connstr dbname=postgres application_name=standby'
hot_standby_feedback = on
sync_replication_slots = on
});
$standby->start;
$primary->safe_psql('postgres', q{ALTER SYSTEM SET synchronized_standby_slots = 'standby_slot'});
$primary->reload;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_eventbus relay'}),
	'0', 'no relay runs on the standby');

# $n transactions of 10 events each
sub publish_txns
{
	my ($phase, $n) = @_;
	my $sql = '';
	$sql .= qq{SELECT count(*) FROM eventbus.publish_batch('ev',
    ARRAY(SELECT jsonb_build_object('phase', '$phase', 'txn', $_, 'i', i) FROM generate_series(1, 10) i),
    ARRAY(SELECT 'k' || i FROM generate_series(1, 10) i));
} foreach 1 .. $n;
	return $sql;
}
$primary->safe_psql('postgres', publish_txns('before', 20));
is(scalar(@{ wait_for_kafka($bootstrap, 'ev', 200) }), 200, 'relayed on the primary');
ok(poll_until(30, sub {
	$primary->safe_psql('postgres', q{SELECT messages_in_flight = 0 FROM eventbus.relay_status}) eq 't' }),
	'everything acknowledged');
my $confirmed = slot_confirmed_lsn($primary);
ok(poll_until(90, sub {
	$standby->safe_psql('postgres', qq{
SELECT synced AND NOT temporary AND failover AND confirmed_flush_lsn >= '$confirmed'
FROM pg_replication_slots WHERE slot_name = '$slot'}) eq 't' }, 250),
	'the synchronized slot on the standby has advanced with the primary\'s');

# Publish continuously, let the relay send some, stop the primary.
my $loop = q{DO $$
BEGIN
  FOR t IN 1..100000 LOOP
    PERFORM eventbus.publish_batch('ev',
      ARRAY(SELECT jsonb_build_object('phase', 'during', 'txn', t, 'i', i) FROM generate_series(1, 5) i),
      ARRAY(SELECT 'k' || i FROM generate_series(1, 5) i));
    COMMIT;
    PERFORM pg_sleep(0.005);
  END LOOP;
END $$;};
my ($bg_out, $bg_err) = ('', '');
my $bg = IPC::Run::start([ 'psql', '-XAtq', '-d', $primary->connstr('postgres'), '-c', $loop ],
	'>', \$bg_out, '2>', \$bg_err);
ok(poll_until(60, sub {
	my $m = kafka_read($bootstrap, 'ev');
	$m && @$m >= 400 }, 250), 'events published during the test are being relayed');
$primary->stop('immediate');
eval { $bg->finish; 1 } or $bg->kill_kill;
note "publisher: $bg_err";

my $log = -s $standby->logfile;
$standby->promote;
ok(wait_relay_running($standby, 'postgres', 60), 'the relay runs on the promoted standby');
my $st = relay_status($standby);
is($st->{slot_name}, $slot, 'with the same slot');
is($standby->safe_psql('postgres', q{SELECT slot_created_at FROM eventbus.relay_status}), $created_at,
	'... the synchronized one (created on the old primary)');
ok(!defined $st->{slot_warning}, '... without a warning');
unlike(log_since($standby, $log), qr/creating replication slot/, 'the relay did not create a new slot');

$standby->safe_psql('postgres', publish_txns('after', 2));
my $committed = decode_json($standby->safe_psql('postgres', q{
	SELECT json_agg(json_build_object('id', event_id, 'partition', partition,
	    'position', position, 'value', value::text))
	FROM eventbus_data.ev}));
my %want = map { $_->{id} => $_ } @$committed;
my $msgs;
poll_until(60, sub {
	$msgs = kafka_read($bootstrap, 'ev') or return 0;
	my $by = by_event_id($msgs);
	return !grep { !$by->{$_} } keys %want;
}, 500);
$msgs = kafka_read($bootstrap, 'ev') // [];
my ($missing, $unknown, $differ, $resent) = compare_delivery(\%want, $msgs);
my $during = grep { $_->{value} =~ /"during"/ } @$committed;
note scalar(@$msgs) . " messages in Kafka for " . scalar(keys %want)
  . " committed events ($during published during the promotion), $resent re-sent";
cmp_ok($during, '>', 0, 'events were committed while the primary was stopped');
is(scalar(@$missing), 0, 'every event committed on the new primary is in Kafka')
  or diag("missing: @{$missing}[0 .. ($#$missing < 9 ? $#$missing : 9)]");
is(scalar(@$unknown), 0, 'Kafka holds no event the new primary does not have')
  or diag("@{$unknown}[0 .. ($#$unknown < 9 ? $#$unknown : 9)]");
is(scalar(@$differ), 0, 're-sent copies are identical');

ok(!$standby->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
$standby->stop;
$mock->stop;
done_testing();
