# The Kafka relay across a crash (immediate stop) of the server while it
# relays a steady stream (invariant 5).
#
# pgbench clients publish continuously, single events and batches, and
# record the event id of every event they publish in table "committed", in
# the same transaction.  While the relay is sending, the server is stopped
# in immediate mode, then started again and more events are published.
# Then:
#  - every committed event is in Kafka, and nothing else (no event of a
#    transaction the crash interrupted);
#  - an event may arrive more than once (the relay resends from the slot's
#    confirmed position), but every copy carries the same event id, LSN,
#    partition, position and value; the test reports how many were re-sent.

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

my $mock = RelayTest::MockKafka->start('--topic', 'ev:3');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('crash', bootstrap => $bootstrap, start => 1);

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ev', 3);
SELECT eventbus.relay_topic('ev');
CREATE TABLE committed (event_id uuid PRIMARY KEY);
CREATE SEQUENCE batch_seq;
});

# Two single events, or a batch of five with one key; each event id goes
# into "committed" in the same transaction.
my $script = q{
\set k random(1, 20)
\set kind random(1, 2)
BEGIN;
\if :kind = 1
SELECT (r).partition AS p, (r).position AS pos
FROM (SELECT eventbus.publish('ev', jsonb_build_object('c', :client_id, 'k', :k),
                              key => 'c' || :client_id || '-' || :k) AS r) s \gset
INSERT INTO committed SELECT event_id FROM eventbus_data.ev WHERE partition = :p AND position = :pos;
SELECT (r).partition AS p, (r).position AS pos
FROM (SELECT eventbus.publish('ev', jsonb_build_object('c', :client_id, 'k', :k, 'second', true),
                              headers => '{"h": "v"}') AS r) s \gset
INSERT INTO committed SELECT event_id FROM eventbus_data.ev WHERE partition = :p AND position = :pos;
\else
SELECT nextval('batch_seq') AS b \gset
SELECT min(partition) AS p, min(position) AS lo, max(position) AS hi
FROM eventbus.publish_batch('ev',
    ARRAY(SELECT jsonb_build_object('c', :client_id, 'b', :b, 'i', i) FROM generate_series(1, 5) i),
    array_fill('c' || :client_id || '-' || :k, ARRAY[5])) \gset
INSERT INTO committed
SELECT event_id FROM eventbus_data.ev
WHERE partition = :p AND position BETWEEN :lo AND :hi AND value @> jsonb_build_object('b', :b);
\endif
COMMIT;
};
my $tmp = PostgreSQL::Test::Utils::tempdir;
PostgreSQL::Test::Utils::append_to_file("$tmp/publish.sql", $script);

sub pgbench_cmd
{
	return (
		'pgbench', '-n', '-h', $node->host, '-p', $node->port,
		'-c', $clients, '-j', 2, @_, '-f', "$tmp/publish.sql", $db);
}

# ---------------------------------------------------------------------------
# A steady stream, then an immediate stop while it is being relayed.

my ($out, $err) = ('', '');
my @cmd = pgbench_cmd('-T', 60);
note "running: @cmd";
my $bench = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err,
	IPC::Run::timeout(120));

ok( poll_until(
		30,
		sub {
			my $s = relay_status($node, $db);
			return $s->{events_relayed} >= 2000 && $s->{messages_in_flight} > 0;
		},
		50),
	'the relay is sending the stream (2000 acknowledged, more in flight)');
my $before = relay_status($node, $db);
my $flush = $node->safe_psql($db, 'SELECT pg_current_wal_flush_lsn()');
note "before the crash: flush $flush, status " . encode_json($before);

$node->stop('immediate');
$bench->finish;
note "pgbench:\n$out$err";
# Depending on where each client was, pgbench reports the lost connection
# as the server's message, libpq's, or its own ("could not send", "perhaps
# the backend died"); whatever the wording, the run was cut short.
like($err,
	qr/server closed the connection|terminating connection|connection to server|could not send|backend died|Run was aborted/i,
	'pgbench lost its connections to the crash');

# ---------------------------------------------------------------------------
# Restart and publish more.

$node->start;
ok(wait_relay_running($node, $db), 'after the restart the relay runs again');
my $after_restart = relay_status($node, $db);
isnt($after_restart->{worker_pid}, $before->{worker_pid}, 'it is a new relay worker');

($out, $err) = ('', '');
@cmd = pgbench_cmd('-t', 50);
my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
ok($ok, 'publishing after the restart succeeds') or diag($err);

# What committed: the recorded event ids, which must be exactly the stored
# events (both were written in the same transactions).
is( $node->safe_psql(
		$db,
		'SELECT count(*) FROM eventbus_data.ev e FULL JOIN committed c USING (event_id) WHERE e.event_id IS NULL OR c.event_id IS NULL'
	),
	'0',
	'the stored events are exactly the recorded committed ones');
my $committed = decode_json(
	$node->safe_psql(
		$db, q{
	SELECT json_agg(json_build_object('id', event_id, 'partition', partition,
	    'position', position, 'value', value::text))
	FROM eventbus_data.ev}));
note scalar(@$committed) . ' events committed';

# ---------------------------------------------------------------------------
# Kafka has every committed event.

my %want = map { $_->{id} => $_ } @$committed;
my $msgs;
poll_until(
	40,
	sub {
		$msgs = kafka_read($bootstrap, 'ev') or return 0;
		my $by = by_event_id($msgs);
		return !grep { !$by->{$_} } keys %want;
	},
	500);
ok(poll_until(20, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'nothing left in flight');
$msgs = kafka_read($bootstrap, 'ev') // [];

my ($missing, $unknown, $differ, $resent) = compare_delivery(\%want, $msgs);
my @missing = @$missing;
my @unknown = @$unknown;
my @differ = @$differ;
my $ids = scalar(keys %want);
note "Kafka: " . scalar(@$msgs) . " messages for $ids committed events, $resent re-sent after the crash";
cmp_ok($ids, '>', $before->{events_relayed}, 'events were committed after the crash point too');
is(scalar(@missing), 0, "every committed event is in Kafka ($ids)")
  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
is(scalar(@unknown), 0, 'no event of an interrupted transaction reached Kafka')
  or diag("@unknown[0 .. ($#unknown < 9 ? $#unknown : 9)]");
is(scalar(@differ), 0,
	"the $resent re-sent messages carry the same event id, LSN, partition, position and value"
) or diag("@differ[0 .. ($#differ < 9 ? $#differ : 9)]");

ok(!$node->log_contains(qr/TRAP:|PANIC/), 'no assertion failure or PANIC in the server log');
$node->stop;
$mock->stop;
note sprintf('082_relay_crash took %.1f s', time() - $t0);
done_testing();
