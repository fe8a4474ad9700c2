# The exactly-once relay (eventbus.relay_delivery = 'exactly_once') across
# immediate stops at random points of a heavy publish, repeated, and a
# SIGKILL of the relay worker (which restarts the server's children).
#
# pgbench clients publish continuously, single events and batches, and
# record the event id of every event they publish in table "committed", in
# the same transaction.  Each round waits until the relay has acknowledged
# a random number of events, then stops the server in immediate mode (the
# last round kills the relay worker instead) and starts it again.  At the
# end, what a read_committed consumer sees (RelayTest::committed_view: the
# mock cluster does not filter aborted transactions itself) holds every
# committed event exactly once: nothing missing, no duplicate, counted by
# event id, and nothing of a transaction that did not commit.
#
# With eventbus.relay_delivery = 'at_least_once' the same test fails: the
# relay sends again what it sent since the slot was last saved.

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RelayTest;

my $t0 = time();
my $db = 'postgres';
my $clients = 4;
my $rounds = 3;
my $delivery = $ENV{EB_RELAY_DELIVERY} // 'exactly_once';

my $mock = RelayTest::MockKafka->start('--topic', 'ev:3');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'eos',
	bootstrap => $bootstrap,
	start => 1,
	conf => "eventbus.relay_delivery = '$delivery'\nrestart_after_crash = on\n");

# topic ev (3 partitions, relayed), table committed and the pgbench script
my $script_file = committed_workload($node, $db);

sub pgbench_cmd
{
	return (
		'pgbench', '-n', '-h', $node->host, '-p', $node->port,
		'-c', $clients, '-j', 2, @_, '-f', $script_file, $db);
}

# ---------------------------------------------------------------------------
# Rounds: a heavy publish, interrupted at a random point.

foreach my $round (1 .. $rounds + 1)
{
	my $kill = $round > $rounds;
	my ($out, $err) = ('', '');
	my @cmd = pgbench_cmd('-T', 60);
	my $bench = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err,
		IPC::Run::timeout(120));
	my $threshold = 300 + int(rand(1500));

	ok( poll_until(
			30,
			sub {
				relay_status($node, $db)->{events_relayed} >= $threshold;
			},
			20),
		"round $round: the relay acknowledged $threshold events");
	usleep(int(rand(300_000)));
	my $before = relay_status($node, $db);

	if ($kill)
	{
		# The postmaster logs the kill at LOG level ("terminated by signal
		# 9"), which scripts/test.sh takes for a crash: for the moment of
		# the kill, only FATAL and PANIC are logged.
		$node->append_conf('postgresql.conf', "log_min_messages = fatal\n");
		$node->reload;
		usleep(500_000);
		note "round $round: SIGKILL of relay worker $before->{worker_pid}";
		kill 'KILL', $before->{worker_pid};
		$bench->finish;
		ok( poll_until(
				60,
				sub {
					my $r = $node->psql($db, 'SELECT 1', on_error_stop => 0);
					return $r == 0;
				},
				200),
			"round $round: the server is back after the relay was killed");
		$node->append_conf('postgresql.conf', "log_min_messages = warning\n");
		$node->reload;
	}
	else
	{
		note "round $round: immediate stop at " . encode_json($before);
		$node->stop('immediate');
		$bench->finish;
		$node->start;
	}
	ok(wait_relay_running($node, $db, 60), "round $round: the relay runs again");
}

# A last calm publish.
{
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ pgbench_cmd('-t', 50) ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	ok($ok, 'publishing after the last round succeeds') or diag($err);
}

my %want = %{ committed_events($node, $db) };
my $ids = scalar(keys %want);
note "$ids events committed";

# ---------------------------------------------------------------------------
# What a read_committed consumer sees: every committed event, once.

my ($msgs, $view);
poll_until(
	60,
	sub {
		$msgs = kafka_read($bootstrap, 'ev') or return 0;
		$view = committed_view($bootstrap, $msgs);
		my $by = by_event_id($view);
		return !grep { !$by->{$_} } keys %want;
	},
	1000);
ok(poll_until(30, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'nothing left in flight');
$msgs = kafka_read($bootstrap, 'ev') // [];
$view = committed_view($bootstrap, $msgs);

my ($missing, $unknown, $differ, $resent) = compare_delivery(\%want, $view);
note "Kafka: " . scalar(@$msgs) . " messages in the log, "
  . scalar(@$view) . " committed, for $ids committed events";
is(scalar(@$missing), 0, "every committed event is in Kafka ($ids)")
  or diag("missing: @$missing[0 .. ($#$missing < 9 ? $#$missing : 9)]");
is($resent, 0, 'no event is there twice for a read_committed consumer');
is(scalar(@$unknown), 0, 'no event of an interrupted transaction reached Kafka')
  or diag("@$unknown[0 .. ($#$unknown < 9 ? $#$unknown : 9)]");
is(scalar(@$differ), 0, 'every message carries its event\'s partition, position and value')
  or diag("@$differ[0 .. ($#$differ < 9 ? $#$differ : 9)]");

like(slurp_file($node->logfile),
	qr/exactly-once with transactional.id "pg_eventbus-\d+-\d+": Kafka has every transaction up to commit LSN/,
	'the relay read its progress back from Kafka after the restarts');

ok(!$node->log_contains(qr/TRAP:|PANIC/), 'no assertion failure or PANIC in the server log');
$node->stop;
$mock->stop;
note sprintf('131_relay_exactly_once took %.1f s', time() - $t0);
done_testing();
