# One transaction of 300,000 events is relayed whole, and the relay
# worker's memory stays bounded while it is: the output plugin builds each
# message in a memory context reset after the message (src/relay_output.c)
# and keeps nothing per change.
#
# The worker's memory is read while it relays, with
# pg_log_backend_memory_contexts(pid): the worker writes its memory
# contexts to the server log, and the test takes the "Grand total" lines.
# The reorder buffer (logical_decoding_work_mem) and the messages waiting
# for Kafka (eventbus.relay_max_in_flight) are set low, so that what is
# left is the output plugin's: well under 32 MB.  A plugin that kept even
# 200 bytes per change would pass 60 MB.
#
# Note: the output plugin released its per-message memory before this test
# was written too (it passes on that code); it guards against a regression.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use RelayTest;

my $db = 'postgres';
my $events = 300000;
my $bound = 32 * 1024 * 1024;

my $mock = RelayTest::MockKafka->start('--topic', 'bulk:2');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'relay_big_txn',
	bootstrap => $bootstrap,
	start => 1,
	conf => qq{
logical_decoding_work_mem = '1MB'
eventbus.relay_max_in_flight = 1000
});

$node->safe_psql($db, q{
SELECT eventbus.create_topic('bulk', 2);
SELECT eventbus.relay_topic('bulk');
});

my $pid = $node->safe_psql($db, 'SELECT worker_pid FROM eventbus.relay_stats()');
ok($pid =~ /^\d+$/, "the relay worker runs (pid $pid)");
my $relayed0 = $node->safe_psql($db, 'SELECT events_relayed FROM eventbus.relay_stats()');

# one transaction: publish_batch in chunks, committed together
$node->safe_psql($db, qq{
BEGIN;
SELECT count(*) FROM generate_series(0, $events / 10000 - 1) AS c,
  LATERAL eventbus.publish_batch('bulk',
    ARRAY(SELECT jsonb_build_object('i', c * 10000 + i, 'pad', 'some text of an event')
          FROM generate_series(1, 10000) AS i),
    ARRAY(SELECT 'k' || (i % 97) FROM generate_series(1, 10000) AS i));
COMMIT;
});
my $end_lsn = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');

# ask for the worker's memory every 200 ms until everything is relayed
my $log_offset = -s $node->logfile;
my $asked = 0;
my $done = poll_until(
	600,
	sub {
		$node->safe_psql($db, "SELECT pg_log_backend_memory_contexts($pid)");
		$asked++;
		my $confirmed = slot_confirmed_lsn($node, $db);
		return defined $confirmed && lsn_cmp($confirmed, $end_lsn) >= 0;
	},
	200);
ok($done, "the relay confirmed the transaction ($asked memory readings asked for)");

my $relayed = $node->safe_psql($db, 'SELECT events_relayed FROM eventbus.relay_stats()');
is($relayed - $relayed0, $events, "all $events events of the transaction were relayed");
my $pid_after = $node->safe_psql($db, 'SELECT worker_pid FROM eventbus.relay_stats()');
is($pid_after, $pid, 'by the same worker');

# the readings the worker wrote while it relayed
usleep(500_000);
my @totals = log_since($node, $log_offset) =~ /\[$pid\] LOG:  Grand total: (\d+) bytes/g;
my $max = 0;
$max < $_ and $max = $_ foreach @totals;
note sprintf('%d readings, the highest %.1f MB', scalar(@totals), $max / 1048576);
ok(@totals >= 3, 'the worker wrote its memory contexts at least 3 times');
cmp_ok($max, '<', $bound, 'the relay worker used less than 32 MB while relaying');

# the end offsets of the Kafka topic's two partitions
my ($offsets, $kerr) = ('', '');
IPC::Run::run([ 'kcat', '-Q', '-b', $bootstrap, '-t', 'bulk:0:-1', '-t', 'bulk:1:-1' ],
	'<', \undef, '>', \$offsets, '2>', \$kerr, IPC::Run::timeout(30));
my $in_kafka = 0;
$in_kafka += $1 while $offsets =~ /offset (\d+)/g;
is($in_kafka, $events, "Kafka holds $events messages")
  or diag("kcat -Q: $offsets $kerr");

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC|exited with exit code/),
	'no crash or worker exit in the server log');
$node->stop;
$mock->stop;
done_testing();
