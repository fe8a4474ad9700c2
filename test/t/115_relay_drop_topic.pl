# drop_topic() of a relayed topic.
#
#  - Without force, it refuses and says what would go: the groups of the
#    topic by name, and the relay to its Kafka topic.
#  - With force, the relay stops relaying it: the mapping goes with the
#    topic, and so do its rows in relay_policy, relay_partitioning and
#    relay_format; a topic created again under the name starts without
#    them.
#  - The relay is not stuck on an event of the dropped topic: one that
#    Kafka refuses for good while the relay waits at it (on_error 'stop') is
#    recorded in relay_dead_letter and passed over once the topic is gone,
#    and events of other topics published after it arrive.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RelayTest;

my $t0 = time();
my $db = 'postgres';

my $mock = RelayTest::MockKafka->start('--topic', 'ok:1', '--topic', 'gone:1',
	'--topic', 'secret:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('drop_topic', bootstrap => $bootstrap, start => 1);

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ok', 1);
SELECT eventbus.create_topic('gone', 1);
SELECT eventbus.relay_topic('ok');
SELECT eventbus.relay_topic('gone', format => 'cloudevents');
SELECT eventbus.create_group('readers', 'gone');
SELECT eventbus.publish('gone', '{"n": 1}');
SELECT eventbus.publish('ok', '{"tag": "warm"}');
});
is(scalar(@{ wait_for_kafka($bootstrap, 'gone', 1, 30) }),
	1, 'an event of "gone" is relayed');
is(scalar(@{ wait_for_kafka($bootstrap, 'ok', 1, 30) }),
	1, 'an event of "ok" is relayed');
my $id = $node->safe_psql($db,
	q{SELECT topic_id FROM eventbus.topic WHERE topic = 'gone'});
my $rows = sub {
	return $node->safe_psql(
		$db, qq{
SELECT (SELECT count(*) FROM eventbus.relay_policy WHERE topic_id = $id) || '/' ||
       (SELECT count(*) FROM eventbus.relay_partitioning WHERE topic_id = $id) || '/' ||
       (SELECT count(*) FROM eventbus.relay_format WHERE topic_id = $id)});
};
ok(poll_until(20, sub { $rows->() eq '1/1/1' }),
	'"gone" has a relay policy, partitioning and format')
  or diag($rows->());

# Without force: refused, naming what would go.
my ($rc, $out, $err) =
  $node->psql($db, "\\set VERBOSITY verbose\nSELECT eventbus.drop_topic('gone')");
like($err, qr/ERROR:  2BP01: topic "gone" is in use/,
	'drop_topic without force refuses (2BP01)');
like($err,
	qr/DETAIL:  Dropping it would affect: consumer group readers \(deleted with the topic\); relay to Kafka topic gone \(stopped\)\./,
	'... and names the group and the relay mapping');

# "gone" is relayed to a Kafka topic that refuses it for good (on_error
# 'stop', the default): the relay waits at its next event.
is($mock->command('topic_error secret TOPIC_AUTHORIZATION_FAILED'),
	'ok', 'Kafka topic "secret" is not authorized');
$node->safe_psql($db, q{SELECT eventbus.relay_topic('gone', 'secret', format => 'cloudevents')});
$node->safe_psql($db, q{SELECT eventbus.publish('gone', '{"n": 2}')});
my $status;
ok( poll_until(
		30,
		sub {
			$status = relay_status($node, $db);
			return $status->{state} eq 'stopped at a refused message';
		}),
	'the relay waits at the refused event of "gone"')
  or diag(encode_json($status));
$node->safe_psql($db, q{SELECT eventbus.publish('ok', '{"tag": "after"}')});

# With force: the topic, its group and its relay settings go; the relay
# goes on (at its next attempt, after a back-off of up to 30 s).
$node->safe_psql($db, q{SELECT eventbus.drop_topic('gone', force => true)});
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.topics WHERE topic = 'gone'}),
	'0', 'drop_topic(force => true) drops the relayed topic');
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.consumer_group}),
	'0', '... with its group');
is($rows->(), '0/0/0', '... and its relay policy, partitioning and format');
ok(poll_until(60, sub { scalar(@{ RelayTest::kafka_read($bootstrap, 'ok') // [] }) >= 2 }),
	'an event of another topic published after the refused one arrives');
ok(poll_until(20, sub { relay_status($node, $db)->{state} eq 'running' }),
	'the relay runs');
is( $node->safe_psql(
		$db, q{SELECT topic || '|' || position FROM eventbus.relay_dead_letter}),
	'gone|1',
	'the refused event of the dropped topic is recorded in relay_dead_letter');
my $after = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
ok(poll_until(20, sub { lsn_cmp(slot_confirmed_lsn($node), $after) >= 0 }),
	'the slot moves past it');

# A topic created again under the name starts without the old settings.
$node->safe_psql($db, q{SELECT eventbus.create_topic('gone', 1)});
is( $node->safe_psql(
		$db, q{SELECT relayed_to IS NULL FROM eventbus.topics WHERE topic = 'gone'}),
	't', 'a topic created again under the name is not relayed');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('115_relay_drop_topic took %.1f s', time() - $t0);
done_testing();
