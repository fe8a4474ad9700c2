# A Kafka topic whose authorization is revoked after its partition mapping
# was decided: librdkafka, once its own metadata says the topic is not
# authorized, keeps a message for it without sending or failing it.  The
# relay notices (messages in flight for the topic, no delivery report for
# about 5 s, and the brokers' metadata refusing the topic), ends the
# session, and the next one refuses the message before sending it, by the
# topic's on_error policy: relaying is not stuck.  Under exactly-once the
# Kafka transaction fails first, and the next session refuses the message
# the same way.
#
# librdkafka is told to refresh its metadata every second
# (topic.metadata.refresh.interval.ms), so that it learns of the revocation
# before the next event; the mock refuses in its metadata only.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use RelayTest;

my $t0 = time();
my $db = 'postgres';

my $mock = RelayTest::MockKafka->start('--topic', 'ok:1', '--topic', 'rev:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'revoked',
	bootstrap => $bootstrap,
	start => 1,
	conf => "eventbus.kafka_properties = 'topic.metadata.refresh.interval.ms=1000'\n");

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ok', 1);
SELECT eventbus.create_topic('rev', 1);
SELECT eventbus.relay_topic('ok');
SELECT eventbus.relay_topic('rev', on_error => 'dead_letter');
SELECT eventbus.publish('rev', '{"n": 1}');
});
is(scalar(@{ wait_for_kafka($bootstrap, 'rev', 1, 30) }),
	1, 'the first event of "rev" is relayed (its mapping is decided)');

is($mock->command('topic_error rev TOPIC_AUTHORIZATION_FAILED'),
	'ok', 'Kafka topic "rev" is not authorized from now on');
sleep 3;    # librdkafka's own metadata learns it
$node->safe_psql($db, q{SELECT eventbus.publish('rev', '{"n": 2}')});
$node->safe_psql($db, q{SELECT eventbus.publish('ok', '{"n": 3}')});

my $dl = '';
ok( poll_until(
		60,
		sub {
			($dl = $node->safe_psql($db,
				q{SELECT topic || '|' || position || '|' || error FROM eventbus.relay_dead_letter})) ne '';
		}),
	'the event sent to the revoked topic is dead-lettered');
like($dl, qr/\Arev\|1\|.*authoriz/i, '... with the brokers\' reason');
my $ok = wait_for_kafka($bootstrap, 'ok', 1, 30);
cmp_ok(scalar(@$ok), '>=', 1, 'the event of another topic published after it arrives');
# at-least-once sends it again: it came after the refused event, so the
# slot was not confirmed past it when the session ended
is(scalar(@$ok), 1, '... once, under exactly-once')
  if $node->safe_psql($db, 'SHOW eventbus.relay_delivery') eq 'exactly_once';
ok(poll_until(30, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'nothing is left in flight')
  or diag(encode_json(relay_status($node, $db)));
my $after = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
ok(poll_until(30, sub { lsn_cmp(slot_confirmed_lsn($node), $after) >= 0 }),
	'the slot moves on');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('154_relay_revoked took %.1f s', time() - $t0);
done_testing();
