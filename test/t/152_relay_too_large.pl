# Events too large for Kafka as the relay sends them.
#
#  - publish() refuses, with SQLSTATE 54000, an event of a relayed topic
#    that is small as stored but too large as JSON text
#    (to_jsonb(repeat(chr(1), 400000)): 400 kB stored, 2.4 MB as text),
#    for publish and publish_batch; the same event is accepted on a topic
#    that is not relayed.  outbox() refuses the same value as a message,
#    measured as sent too.
#  - An event that is still too large when the relay sends it (here: a
#    superuser raised eventbus.max_event_size for the session, above what
#    the relay's producer takes) follows the topic's on_error policy:
#    'dead_letter' records it in eventbus.relay_dead_letter and the relay
#    goes on; other topics are not held up.
#  - The check also holds when relay_topic() commits while the publish
#    waits for it, or after a REPEATABLE READ publisher took its snapshot.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $db = 'postgres';
my $mock = RelayTest::MockKafka->start('--topic', 'wide:1', '--topic', 'ok:1', '--topic', 'box:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('relay_too_large', bootstrap => $bootstrap, start => 1);

$node->safe_psql($db, q{
SELECT eventbus.create_topic('wide', 1);
SELECT eventbus.create_topic('ok', 1);
SELECT eventbus.create_topic('local', 1);
SELECT eventbus.relay_topic('wide', on_error => 'dead_letter');
SELECT eventbus.relay_topic('ok');
});

my $escaped = q{to_jsonb(repeat(chr(1), 400000))};

my ($rc, $out, $err) = $node->psql($db,
	"\\set VERBOSITY verbose\nSELECT eventbus.publish('wide', $escaped)");
like($err,
	qr/ERROR:  54000: event of \d+ bytes as relayed to Kafka exceeds eventbus.max_event_size \(999424 bytes\)/,
	'publish: an event of 400 kB stored, 2.4 MB as JSON text, to a relayed topic: SQLSTATE 54000');
like($err, qr/HINT:  /, '... with a hint');
($rc, $out, $err) = $node->psql($db,
	"\\set VERBOSITY verbose\nSELECT count(*) FROM eventbus.publish_batch('wide', ARRAY['{}'::jsonb, $escaped])");
like($err, qr/ERROR:  54000: /, 'publish_batch: the same');
is($node->safe_psql($db, "SELECT partition FROM eventbus.publish('local', $escaped)"),
	'0', 'the same event is accepted on a topic that is not relayed');
($rc, $out, $err) = $node->psql($db,
	"\\set VERBOSITY verbose\nSELECT eventbus.outbox('box', $escaped)");
like($err,
	qr/ERROR:  54000: outbox message of \d+ bytes as sent to Kafka exceeds eventbus.max_event_size \(999424 bytes\)/,
	'outbox: a message of 400 kB stored, 2.4 MB as JSON text: SQLSTATE 54000');
like($node->safe_psql($db, q{SELECT eventbus.outbox('box', to_jsonb(repeat('a', 400000)))}),
	qr/^[0-9a-f-]{36}$/, '... one of 400 kB as JSON text is sent');

# The relay side: a superuser's session may publish larger events than the
# relay's producer takes (eventbus.max_event_size of the server plus 64 kB).
my $pos = $node->safe_psql($db, qq{
SET eventbus.max_event_size = '8MB';
SELECT position FROM eventbus.publish('wide', $escaped);
});
my $id = $node->safe_psql($db,
	"SELECT event_id FROM eventbus_data.wide WHERE partition = 0 AND position = '$pos'");
ok($id =~ /^[0-9a-f-]{36}$/, 'with eventbus.max_event_size raised, the event is published');
$node->safe_psql($db, q{SELECT eventbus.publish('ok', '{"after": true}')});

my $dl;
ok( poll_until(
		60,
		sub {
			$dl = $node->safe_psql($db,
				"SELECT topic || '|' || kafka_topic || '|' || error FROM eventbus.relay_dead_letter WHERE event_id = '$id'");
			return $dl ne '';
		}),
	'on_error dead_letter: the event too large for Kafka is recorded in relay_dead_letter');
like($dl, qr/\Awide\|wide\|.*(large|MSG_SIZE_TOO_LARGE)/i, "... with the error ($dl)");
my $ok = wait_for_kafka($bootstrap, 'ok', 1, 30);
is(scalar(grep { $_->{value} =~ /"after": true/ } @$ok), 1,
	'the event of another topic published after it arrives');
is(relay_status($node, $db)->{state}, 'running', 'the relay runs');

# ---------------------------------------------------------------------------
# Whether a transaction is relayed is decided by the mapping visible at its
# commit.  A relay_topic() that commits while a publish waits for it
# (relay_topic() waits for the topic's publishers), or after a REPEATABLE
# READ publisher took its snapshot, makes the publishing transaction
# relayed: its event is measured as relayed too.  (Accepted, it stopped
# relaying under on_error 'stop': Kafka refused it.)

$node->safe_psql($db, q{
SELECT eventbus.create_topic('race', 1);
SELECT eventbus.create_topic('race_rr', 1);
});

my $relayer = $node->background_psql($db);
$relayer->query_safe('BEGIN');
$relayer->query_safe(q{SELECT eventbus.relay_topic('race')});
my ($pin, $pout, $perr) = ('', '', '');
my $publisher = IPC::Run::start(
	[
		'psql', '-X', '-A', '-t', '-d', $node->connstr($db),
		'-c', "SELECT position FROM eventbus.publish('race', $escaped)"
	],
	'<', \$pin, '>', \$pout, '2>', \$perr);
ok( poll_until(
		30,
		sub {
			$node->safe_psql($db,
				q{SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%publish(''race''%'}
			) eq '1';
		}),
	'a publish to the topic waits for relay_topic()');
$relayer->query_safe('COMMIT');
$relayer->quit;
$publisher->finish;
like($perr, qr/exceeds eventbus\.max_event_size/,
	'relay_topic() committed while the publish waited: the event is refused');

my $rr = $node->background_psql($db, on_error_stop => 0);
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$rr->query_safe('SELECT count(*) FROM eventbus.topic');
$node->safe_psql($db, q{SELECT eventbus.relay_topic('race_rr')});
eval { $rr->query_safe("SELECT position FROM eventbus.publish('race_rr', $escaped)"); };
like($@, qr/exceeds eventbus\.max_event_size/,
	'relay_topic() committed after a REPEATABLE READ snapshot was taken: refused too');
$rr->quit;
is($node->safe_psql($db,
		q{SELECT (SELECT count(*) FROM eventbus_data.race) + (SELECT count(*) FROM eventbus_data.race_rr)}),
	'0', 'neither event was published');
$node->safe_psql($db, q{SELECT eventbus.publish('race', '{"small": true}')});
ok(poll_until(30, sub { (relay_status($node, $db)->{backlog}{race} // -1) == 0 }),
	'a small event of the topic is relayed');
is(relay_status($node, $db)->{state}, 'running', 'the relay runs');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC|exited with exit code/),
	'no crash or worker exit in the server log');
$node->stop;
$mock->stop;
done_testing();
