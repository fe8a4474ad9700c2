# A burst of changes to eventbus.topic asks the Kafka brokers about the
# relayed topics once, not once per change.
#
# Every transaction that changes eventbus.topic (create_topic(),
# relay_topic(), ...) tells the relay, when it decodes its commit, that the
# relayed Kafka topics may have changed.  It used to ask the brokers about
# every relayed Kafka topic after each such transaction: creating 60 topics
# one per transaction made 60 metadata requests for the whole cluster (and
# the WAL of such a burst, decoded again after a restart, as many within
# milliseconds).  Now an answer less than a second old is used as it is;
# a Kafka topic named for the first time is still asked about at once.
#
# The relay says at DEBUG1 each time it asks; the test counts those lines.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use RelayTest;

my $t0 = time();
my $db = 'postgres';
my $topics = 60;

my $mock = RelayTest::MockKafka->start('--topic', 'a:1', '--topic', 'b:1',
	'--topic', 'c:1', '--topic', 'd:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'metadata_burst',
	bootstrap => $bootstrap,
	start => 1,
	conf => "log_min_messages = debug1\n");

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic(t, 1), eventbus.relay_topic(t) FROM unnest(ARRAY['a', 'b', 'c']) t;
});
$node->safe_psql($db,
	q{SELECT eventbus.publish(t, '{"n": 0}') FROM unnest(ARRAY['a', 'b', 'c']) t});
foreach my $t ('a', 'b', 'c')
{
	is(scalar(@{ wait_for_kafka($bootstrap, $t, 1, 30) }),
		1, "an event of \"$t\" is relayed");
}

# the relay's "asking" lines from the log offset on
sub asks
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @lines = $log =~ /(asking the Kafka brokers about [^\n]*)/g;
	return \@lines;
}

# Sanity: the line is there to count (the first session asked).
ok(scalar(@{ asks(0) }) >= 1, 'the relay logs its metadata requests at DEBUG1');

my $offset = -s $node->logfile;
my $started = time();
# $topics topics created one per transaction; halfway, one more is relayed
# to Kafka topic "d", which the session has not asked about yet.
$node->safe_psql(
	$db, qq{
DO \$\$
BEGIN
	FOR i IN 1..$topics LOOP
		PERFORM eventbus.create_topic('burst_' || i, 1);
		IF i = $topics / 2 THEN
			PERFORM eventbus.relay_topic('burst_' || i, 'd');
		END IF;
		COMMIT;
	END LOOP;
END
\$\$;
SELECT eventbus.publish('burst_' || ($topics / 2), '{"n": 1}');
SELECT eventbus.publish('a', '{"n": 1}');
});
my $created_in = time() - $started;

is(scalar(@{ wait_for_kafka($bootstrap, 'd', 1, 30) }),
	1, 'the Kafka topic named halfway through the burst is asked about, its event relayed');
is(scalar(@{ wait_for_kafka($bootstrap, 'a', 2, 30) }),
	2, 'the event published after the burst is relayed (decoding is past it)');
my $elapsed = time() - $started;

my $asks = asks($offset);
note sprintf('%d topics created in %.1f s; the relay asked the brokers %d times in %.1f s',
	$topics, $created_in, scalar(@$asks), $elapsed);
note $_ foreach @$asks;
# at most about one ask per second of the burst (plus the one for "d"), far
# below one per transaction
cmp_ok(scalar(@$asks), '<=', int($elapsed) + 3,
	"about one metadata request per second during the burst, not one per transaction ($topics)");

$node->stop;
$mock->stop;
note sprintf('156_relay_metadata_burst took %.1f s', time() - $t0);
done_testing();
