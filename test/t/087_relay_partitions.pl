# The Kafka partition of a relayed event never depends on whether the
# brokers answered at that moment: the mapping is decided once per topic
# and Kafka topic (eventbus.relay_partitioning) and kept.
#
#  - Topic "ev" and Kafka topic "ev" have 3 partitions each: once an event
#    was relayed, the mapping is "partition p to Kafka partition p".
#  - The broker goes down and the server restarts (a new relay session that
#    cannot ask the brokers anything); events without a key are published
#    to each partition; the broker comes back: every event lands in its own
#    partition (kcat shows the partition, the eventbus-partition header the
#    local one).
#  - Topic "flaky" (3 partitions) is first relayed while the brokers answer
#    for Kafka topic "flaky" (3) with an error that may pass (request timed
#    out): nothing is sent by key in the meantime, relay_status says why the
#    events wait, and once the error is gone every event lands in its own
#    partition.
#  - relay_topic() on a running relay into a Kafka topic ("fresh") goes on
#    without the session stopping, also while the brokers first answer
#    "no leader yet" for it ("newk", as when they create it on demand).
#  - Topic "wide" (3 partitions) relayed to Kafka topic "narrow" (2): the
#    relay decides "by key"; relay_topic() for that Kafka topic warns that
#    the partition counts differ once the relay knows them.

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

my $mock =
  RelayTest::MockKafka->start('--topic', 'ev:3', '--topic', 'narrow:2',
	'--topic', 'flaky:3', '--topic', 'fresh:2', '--topic', 'newk:2');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('partitions', bootstrap => $bootstrap, start => 1);

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ev', 3);
SELECT eventbus.relay_topic('ev');
SELECT eventbus.publish('ev', '{"phase": "before"}', partition => 0);
});
is(scalar(@{ wait_for_kafka($bootstrap, 'ev', 1, 30) }),
	1, 'before the outage, an event is relayed');
ok(poll_until(10, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'nothing in flight before the outage');

# ---------------------------------------------------------------------------
# Broker down, server restarted: the new relay session cannot fetch the
# Kafka topic's metadata.

is($mock->command('down 1'), 'ok', 'the broker is down');
$node->restart;
my $sql = '';
foreach my $i (1 .. 30)
{
	my $p = $i % 3;
	$sql .=
	  "SELECT eventbus.publish('ev', '{\"phase\": \"outage\", \"i\": $i}', partition => $p);\n";
}
$node->safe_psql($db, $sql);
if ($node->safe_psql($db, 'SHOW eventbus.relay_delivery') eq 'exactly_once')
{
	# a transactional producer needs the brokers before it sends anything:
	# the events wait in WAL
	ok( poll_until(
			30, sub {
				my $s = relay_status($node, $db);
				$s->{state} =~ /^(broker unreachable|starting Kafka transactions)$/
				  && $s->{messages_in_flight} == 0;
			}),
		'after the restart the exactly-once relay waits for the brokers, nothing in flight')
	  or diag(encode_json(relay_status($node, $db)));
}
else
{
	ok( poll_until(
			30, sub { relay_status($node, $db)->{messages_in_flight} == 30 }),
		'after the restart the relay has the 30 events in flight while the broker is down')
	  or diag(encode_json(relay_status($node, $db)));
}
is($mock->command('up 1'), 'ok', 'the broker is up again');

my $msgs = wait_for_kafka($bootstrap, 'ev', 31, 45);
my @outage = grep { $_->{value} =~ /"outage"/ } @$msgs;
is(scalar(@outage), 30, 'the 30 events published during the outage arrived');
my @wrong = grep { $_->{partition} ne ($_->{headers}{'eventbus-partition'} // '') }
  @outage;
is(scalar(@wrong), 0,
	'every event landed in its own Kafka partition after the restart during the outage')
  or diag(join(', ',
		map { "$_->{value} in Kafka partition $_->{partition}" } @wrong[ 0 .. ($#wrong < 5 ? $#wrong : 5) ]));

is( $node->safe_psql(
		$db,
		q{SELECT local_partitions || '/' || kafka_partitions || '/' || by_partition
		  FROM eventbus.relay_partitioning r JOIN eventbus.topic t USING (topic_id)
		  WHERE t.topic = 'ev' AND r.kafka_topic = 'ev'}),
	'3/3/true',
	'eventbus.relay_partitioning: ev maps partition to partition');

# Creates a topic of $parts partitions, relays it, and publishes $n events
# to its partitions in turn, one transaction each, in one session.
sub relay_and_publish
{
	my ($topic, $parts, $n) = @_;
	my $sql = "SELECT eventbus.create_topic('$topic', $parts);\n"
	  . "SELECT eventbus.relay_topic('$topic');\n";
	foreach my $i (1 .. $n)
	{
		my $p = $i % $parts;
		$sql .=
		  "SELECT eventbus.publish('$topic', '{\"phase\": \"$topic\", \"i\": $i}', partition => $p);\n";
	}
	$node->safe_psql($db, $sql);
}

# ---------------------------------------------------------------------------
# The brokers answer for the Kafka topic with an error that may pass.

is($mock->command('topic_error flaky REQUEST_TIMED_OUT'),
	'ok', 'metadata for Kafka topic "flaky" answers "request timed out"');
relay_and_publish('flaky', 3, 30);
ok( poll_until(
		30,
		sub {
			my $s = relay_status($node, $db);
			$s->{last_error} =~
			  /Kafka topic "flaky" cannot be used yet \(.*timed out.*\): its events wait/i
			  && $s->{state} eq 'waiting for Kafka topic metadata';
		}),
	'relay_status says that the events of "flaky" wait, and why; the relay waits outside decoding')
  or diag(encode_json(relay_status($node, $db)));
ok( $node->log_contains(
		qr/Kafka topic "flaky" of the transaction at [0-9A-F]+\/[0-9A-F]+ is not described by the brokers yet; relaying goes on from the confirmed position once it is/
	),
	'the log says that decoding stopped before the first transaction of "flaky"');
is(relay_status($node, $db)->{messages_in_flight},
	0, 'nothing of "flaky" was handed to the producer meanwhile');
is($mock->command('topic_error flaky NO_ERROR'), 'ok', 'the error has passed');

$msgs = wait_for_kafka($bootstrap, 'flaky', 30, 60);
is(scalar(@$msgs), 30, 'the 30 events of "flaky" arrived');
@wrong = grep { $_->{partition} ne ($_->{headers}{'eventbus-partition'} // '') }
  @$msgs;
is(scalar(@wrong), 0,
	'every event of "flaky" landed in its own Kafka partition')
  or diag(join(', ',
		map { "$_->{value} in Kafka partition $_->{partition}" } @wrong[ 0 .. ($#wrong < 5 ? $#wrong : 5) ]));

# The $n events of Kafka topic $topic arrived, each in its own Kafka
# partition, and decoding never stopped for the topic's metadata.
sub arrived_without_stopping
{
	my ($topic, $n, $what) = @_;
	my $msgs = wait_for_kafka($bootstrap, $topic, $n, 60);
	is(scalar(@$msgs), $n, $what);
	my @wrong =
	  grep { $_->{partition} ne ($_->{headers}{'eventbus-partition'} // '') } @$msgs;
	is(scalar(@wrong), 0, '... each in its own Kafka partition');
	ok(!$node->log_contains(qr/Kafka topic "$topic" of the transaction at .* is not described/),
		'... without decoding stopping for its metadata');
}

# ---------------------------------------------------------------------------
# relay_topic() while relaying: the worker asks about the new Kafka topic
# between WAL records, before the topic's first transaction is decoded,
# so decoding goes on without stopping.

relay_and_publish('fresh', 2, 20);
arrived_without_stopping('fresh', 20,
	'the 20 events of "fresh", relayed right after relay_topic(), arrived');

# ---------------------------------------------------------------------------
# relay_topic() into a Kafka topic the brokers are still creating (brokers
# that create topics on demand first answer "no leader yet"): the worker
# asks again for up to 3 s, between WAL records, so decoding does not stop
# at the topic's first event.

is($mock->command('topic_error newk LEADER_NOT_AVAILABLE'),
	'ok', 'metadata for Kafka topic "newk" answers "leader not available"');
relay_and_publish('newk', 2, 20);
ok( poll_until(
		20,
		sub {
			(relay_status($node, $db)->{last_error} // '') =~
			  /Kafka topic "newk" cannot be used yet/;
		},
		50),
	'the relay asked about "newk" and was told "not yet"');
is($mock->command('topic_error newk NO_ERROR'), 'ok', '"newk" has its leaders');
arrived_without_stopping('newk', 20, 'the 20 events of "newk" arrived');

# ---------------------------------------------------------------------------
# Different partition counts.

my ($rc, $out, $err) = $node->psql(
	$db, q{
SELECT eventbus.create_topic('wide', 3);
SELECT eventbus.relay_topic('wide', 'narrow');
});
is($rc, 0, 'relay_topic into a Kafka topic the relay does not know yet');
unlike($err, qr/WARNING/, '... gives no warning (the count is not known yet)');
$node->safe_psql($db,
	q{SELECT eventbus.publish('wide', '{"w": 1}', key => 'k1')});
is(scalar(@{ wait_for_kafka($bootstrap, 'narrow', 1, 30) }),
	1, 'an event of "wide" arrives in "narrow"');
ok( poll_until(
		10,
		sub {
			$node->safe_psql($db,
				q{SELECT by_partition FROM eventbus.relay_partitioning WHERE kafka_topic = 'narrow'})
			  eq 'f';
		}),
	'eventbus.relay_partitioning: wide to narrow goes by key');

($rc, $out, $err) = $node->psql(
	$db, q{
SELECT eventbus.stop_relay('wide');
SELECT eventbus.relay_topic('wide', 'narrow');
});
is($rc, 0, 'relay_topic again');
like(
	$err,
	qr/WARNING:  Kafka topic "narrow" has 2 partitions, topic "wide" has 3/,
	'relay_topic warns that the partition counts differ');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('087_relay_partitions took %.1f s', time() - $t0);
done_testing();
