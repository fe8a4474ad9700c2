# While Kafka does not acknowledge (here: the only broker is down), the
# at-least-once relay keeps reading WAL until eventbus.relay_max_in_flight
# messages wait.  The transactions it decodes meanwhile that relay nothing
# (most of a database's transactions touch no relayed topic) must not cost
# memory each: they wait for nothing but the transactions before them.
#
#  - One event is relayed, then the broker goes down and one more event is
#    published: it waits in the producer.
#  - 100,000 transactions that touch only a plain table commit, then a last
#    event: once the relay has it in flight, it has decoded everything in
#    between.
#  - The worker's memory contexts (pg_log_backend_memory_contexts) show the
#    relay's session context under 4 MB.  Kept per decoded transaction, the
#    100,000 transactions took 16 MB there.
#  - The broker comes back: both waiting events arrive, and the slot's
#    confirmed position passes the last transaction.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use RelayTest;

my $t0 = time();
my $db = 'postgres';
my $transactions = 100000;
my $bound = 4 * 1024 * 1024;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'relay_memory_outage',
	bootstrap => $bootstrap,
	start => 1,
	conf => qq{
eventbus.relay_delivery = 'at_least_once'
synchronous_commit = off
});

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ev', 1);
SELECT eventbus.relay_topic('ev');
CREATE TABLE plain (i int);
CREATE PROCEDURE many(n int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. n LOOP
		INSERT INTO plain VALUES (i);
		COMMIT;
	END LOOP;
END $$;
SELECT eventbus.publish('ev', '{"n": 0}');
});
is(scalar(@{ wait_for_kafka($bootstrap, 'ev', 1, 30) }),
	1, 'before the outage, an event is relayed');
ok(poll_until(10, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'nothing in flight before the outage');
my $pid = $node->safe_psql($db, 'SELECT worker_pid FROM eventbus.relay_stats()');

is($mock->command('down 1'), 'ok', 'the broker is down');
$node->safe_psql($db, q{SELECT eventbus.publish('ev', '{"n": 1}')});
ok(poll_until(30, sub { relay_status($node, $db)->{messages_in_flight} == 1 }),
	'the event published during the outage waits in the producer')
  or diag(encode_json(relay_status($node, $db)));

$node->safe_psql($db, "CALL many($transactions)");
$node->safe_psql($db, q{SELECT eventbus.publish('ev', '{"n": 2}')});
my $end_lsn = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
ok( poll_until(
		120, sub { relay_status($node, $db)->{messages_in_flight} == 2 }),
	"the relay decoded the $transactions transactions and has the last event in flight"
) or diag(encode_json(relay_status($node, $db)));

my $log_offset = -s $node->logfile;
$node->safe_psql($db, "SELECT pg_log_backend_memory_contexts($pid)");
my $session;
poll_until(
	10,
	sub {
		($session) = log_since($node, $log_offset) =~
		  /pg_eventbus relay session: (\d+) total in/;
		return defined $session;
	});
ok(defined $session, 'the worker wrote its memory contexts to the log');
note sprintf('the relay session context: %.2f MB', ($session // 0) / 1048576);
cmp_ok($session // 0, '<', $bound,
	"the relay session context is under 4 MB after $transactions transactions that relay nothing"
);
is($node->safe_psql($db, 'SELECT worker_pid FROM eventbus.relay_stats()'),
	$pid, 'the same worker (the outage stalls the relay, it does not restart it)');

my $confirmed = slot_confirmed_lsn($node, $db);
ok(lsn_cmp($confirmed, $end_lsn) < 0,
	'the slot has not moved past the events that wait for Kafka');

is($mock->command('up 1'), 'ok', 'the broker is up again');
my $msgs = wait_for_kafka($bootstrap, 'ev', 3, 60);
is_deeply(
	[ sort map { $_->{value} =~ /"n": ?(\d+)/ ? $1 : 'x' } @$msgs ],
	[ 0, 1, 2 ], 'the events published during the outage arrived');
ok( poll_until(
		30,
		sub {
			my $c = slot_confirmed_lsn($node, $db);
			return defined $c && lsn_cmp($c, $end_lsn) >= 0;
		}),
	'the slot is confirmed past the last transaction');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('153_relay_memory_outage took %.1f s', time() - $t0);
done_testing();
