# Exactly-once after a promotion of a standby that was behind its primary.
#
# Kafka's last progress record of the relay's transactional id says how far
# Kafka got, as a commit LSN of the server that wrote it.  A standby promoted
# behind its primary starts a new timeline at an LSN below that one: its new
# transactions get LSNs the old primary had already used for others.  The
# progress record names its timeline, and the relay on the new primary
# believes it only up to where its own history left that timeline.
#
# A primary relays (exactly-once); its standby stops; the primary publishes
# and relays some megabytes more, then stops (immediate).  The standby is
# promoted (timeline 2, at an LSN below the last one Kafka has from the old
# primary) and publishes: every event committed on the new primary is in
# Kafka.  Without the timeline check those events were skipped, as if Kafka
# had them.  (Kafka also holds the old primary's events the standby never
# received, at positions the new primary hands out again: see docs/ha.md.)

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use RelayTest;

my $t0 = time();
my $db = 'postgres';

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1');
my $bootstrap = $mock->bootstrap;

my $primary = PostgreSQL::Test::Cluster->new('tl_primary');
$primary->init(allows_streaming => 'logical');
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
max_replication_slots = 6
eventbus.kafka_brokers = '$bootstrap'
eventbus.relay_delivery = 'exactly_once'
});
$primary->start;
$primary->safe_psql($db, q{
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('ev', 1);
SELECT eventbus.relay_topic('ev');
});
ok(wait_relay_running($primary, $db, 60), 'the relay runs on the primary');

sub publish
{
	my ($node, $phase, $txns, $per_txn, $pad) = @_;
	my $sql = '';
	$sql .= qq{SELECT count(*) FROM eventbus.publish_batch('ev',
    ARRAY(SELECT jsonb_build_object('phase', '$phase', 'txn', $_, 'i', i, 'pad', repeat('x', $pad)) FROM generate_series(1, $per_txn) i));
} foreach 1 .. $txns;
	$node->safe_psql($db, $sql);
}

sub committed_phase
{
	my ($phase) = @_;
	my $msgs = kafka_read($bootstrap, 'ev') // [];
	return scalar grep { $_->{value} =~ /"phase": "$phase"/ }
	  @{ committed_view($bootstrap, $msgs) };
}

publish($primary, 'before', 2, 5, 10);
ok(poll_until(60, sub { committed_phase('before') == 10 }),
	'relayed on the primary');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('tl_standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
$standby->stop('fast');

# The primary goes on alone: some megabytes of WAL the standby never gets.
publish($primary, 'gap', 40, 100, 1000);
ok(poll_until(120, sub { committed_phase('gap') == 4000 }, 500),
	'the primary relays events the standby does not have');
my $old_end = $primary->safe_psql($db, 'SELECT pg_current_wal_lsn()');
$primary->stop('immediate');

my $log = -s $standby->logfile // 0;
$standby->start;
$standby->promote;
ok(wait_relay_running($standby, $db, 90), 'the relay runs on the promoted standby');

publish($standby, 'after', 5, 2, 10);
my $new_end = $standby->safe_psql($db, 'SELECT pg_current_wal_lsn()');
cmp_ok(lsn_cmp($new_end, $old_end), '<', 0,
	"the new primary's transactions have LSNs the old one used ($new_end < $old_end)");

ok(poll_until(60, sub { committed_phase('after') == 10 }),
	'every event committed on the new primary is in Kafka');
like(log_since($standby, $log),
	qr/the last progress record in Kafka was written on timeline 1, which this server's history left at [0-9A-F]+\/[0-9A-F]+/,
	'the relay says which timeline the progress record is of');

# Later transactions on the new timeline are not sent twice after a restart:
# the records the new primary wrote name timeline 2.
$standby->restart;
ok(wait_relay_running($standby, $db, 90), 'the relay runs again after a restart');
publish($standby, 'later', 1, 3, 10);
ok(poll_until(60, sub { committed_phase('later') == 3 }),
	'events published after the restart are in Kafka');
is(committed_phase('after'), 10, '... and those before it once');

ok(!$standby->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$standby->stop;
$mock->stop;
note sprintf('135_relay_exactly_once_timeline took %.1f s', time() - $t0);
done_testing();
