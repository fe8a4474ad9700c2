# At-least-once: a session that ends at a transaction it may not send yet
# does not send the transactions before it twice.
#
# The broker answers every request 1 s late (the mock's rtt), so a
# transaction's messages are still in flight when decoding reaches the next
# one.  That next transaction's Kafka topic is
#
#  - not described by the brokers ("flaky": its metadata answers "request
#    timed out"), so decoding stops before it and the session ends; or
#  - refused by the brokers ("secret": not authorized) with on_error
#    'stop', so the session ends at it.
#
# Either way the 200 events of the transaction before it, on "good", must
# each be in Kafka once: the ending session lets their messages arrive and
# confirms them, and the next session starts after them.  Without that the
# producer's in-flight messages, already on their way to the broker, were
# sent again by the next session (200 duplicates per session).

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

my $mock = RelayTest::MockKafka->start('--topic', 'good:1', '--topic',
	'flaky:1', '--topic', 'secret:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'stop_drain',
	bootstrap => $bootstrap,
	start => 1,
	conf => "eventbus.relay_delivery = 'at_least_once'\n");

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('good', 1);
SELECT eventbus.relay_topic('good');
SELECT eventbus.publish('good', '{"n": 0}');
});
is(scalar(@{ wait_for_kafka($bootstrap, 'good', 1, 30) }),
	1, 'an event of "good" is relayed (its mapping is decided)');

# A transaction of 200 events on "good", then one on $topic, committed one
# right after the other while the broker answers 1 s late.
sub publish_pair
{
	my ($phase, $topic) = @_;
	is($mock->command('rtt 1 1000'), 'ok', 'the broker answers 1 s late');
	$node->safe_psql(
		$db, qq{
SELECT eventbus.publish_batch('good',
  (SELECT array_agg(jsonb_build_object('phase', '$phase', 'i', i)) FROM generate_series(1, 200) i));
SELECT eventbus.publish('$topic', '{"phase": "$phase"}');
});
}

# Every message of "good" once, by event id.
sub good_once
{
	my ($expected, $what) = @_;
	my $msgs = wait_for_kafka($bootstrap, 'good', $expected, 30);
	my $by = by_event_id($msgs);
	my @twice = grep { @{ $by->{$_} } > 1 } keys %$by;
	is(scalar(@$msgs), $expected, "$what: \"good\" holds $expected messages");
	is(scalar(@twice), 0, "$what: no event of \"good\" was sent twice")
	  or diag(scalar(@twice) . ' events sent more than once');
}

# ---------------------------------------------------------------------------
# A Kafka topic the brokers do not describe yet.

is($mock->command('topic_error flaky REQUEST_TIMED_OUT'),
	'ok', 'metadata for Kafka topic "flaky" answers "request timed out"');
$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('flaky', 1);
SELECT eventbus.relay_topic('flaky');
});
my $log_at = -s $node->logfile;
publish_pair('undescribed', 'flaky');
ok( poll_until(
		30, sub {
			log_since($node, $log_at) =~
			  /Kafka topic "flaky" of the transaction at \S+ is not described by the brokers yet/;
		}),
	'decoding stopped before the transaction on "flaky"');
ok(poll_until(30, sub { relay_status($node, $db)->{state} eq 'waiting for Kafka topic metadata' }),
	'the next session waits for the metadata of "flaky"')
  or diag(encode_json(relay_status($node, $db)));
is($mock->command('rtt 1 0'), 'ok', 'the broker answers at once again');
is($mock->command('topic_error flaky NO_ERROR'), 'ok', '"flaky" is described again');
is(scalar(@{ wait_for_kafka($bootstrap, 'flaky', 1, 30) }),
	1, 'the event of "flaky" arrived');
good_once(201, 'after a stop for metadata');

# ---------------------------------------------------------------------------
# A Kafka topic the brokers refuse, on_error 'stop'.

is($mock->command('topic_error secret TOPIC_AUTHORIZATION_FAILED'),
	'ok', 'Kafka topic "secret" is not authorized');
$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('secret', 1);
SELECT eventbus.relay_topic('secret', on_error => 'stop');
});
# the running relay asks the brokers about it after the change of
# eventbus.topic: its refusal is known before its event comes
sleep 2;
publish_pair('refused', 'secret');
ok( poll_until(
		30, sub { relay_status($node, $db)->{state} eq 'stopped at a refused message' }),
	'relaying stops at the refused event of "secret"')
  or diag(encode_json(relay_status($node, $db)));
is($mock->command('rtt 1 0'), 'ok', 'the broker answers at once again');
# a few more sessions stop at the same event (back-off 1, 2, 4 s)
sleep 8;
good_once(401, 'after stops at a refused message');
like(relay_status($node, $db)->{last_error},
	qr/secret/, 'relay_status names the refused Kafka topic');

$node->stop;
$mock->stop;
note sprintf('155_relay_stop_drain: %.1f s', time() - $t0);
done_testing();
