# Which Kafka topics a role may relay into is decided by a superuser, and
# the relay checks it again as of each decoded transaction (issue 9,
# item 8).
#
#  - A topic owner without an allow-list entry cannot relay_topic() into a
#    Kafka topic, nor send outbox messages to it (42501, hint naming
#    allow_relay); after allow_relay() with a prefix it can, and events and
#    outbox messages arrive.
#  - After disallow_relay(), an event published and an outbox message
#    written by a REPEATABLE READ transaction whose snapshot predates the
#    disallow (so outbox() itself still allowed it) are skipped and counted,
#    not sent; the relay goes on (same
#    worker).  Allowed again, events flow again.

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

my $mock = RelayTest::MockKafka->start('--topic', 'team-a.orders:1',
	'--topic', 'team-a.mails:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('allowlist', bootstrap => $bootstrap, start => 1);

$node->safe_psql(
	$db, q{
CREATE ROLE team_a LOGIN;
GRANT CREATE ON SCHEMA eventbus_data TO team_a;
GRANT EXECUTE ON FUNCTION eventbus.outbox(text, jsonb, text, jsonb) TO team_a;
SET ROLE team_a;
SELECT eventbus.create_topic('orders_a');
});

my ($ret, $out, $err) = $node->psql($db,
	q{SET ROLE team_a; SELECT eventbus.relay_topic('orders_a', 'team-a.orders')});
like($err, qr/ERROR:  role "team_a" may not relay into Kafka topic "team-a.orders"/,
	'relay_topic() without an allow-list entry is refused');
like($err, qr/HINT:  A superuser can allow it with SELECT eventbus.allow_relay\('team_a', 'team-a.orders'\)/,
	'... with a hint naming allow_relay');
($ret, $out, $err) = $node->psql($db,
	q{SET ROLE team_a; SELECT eventbus.outbox('team-a.mails', '{"m": 0}')});
like($err, qr/ERROR:  role "team_a" may not send to Kafka topic "team-a.mails"/,
	'outbox() without an allow-list entry is refused');

$node->safe_psql($db, q{SELECT eventbus.allow_relay('team_a', 'team-a.*')});
$node->safe_psql(
	$db, q{
SET ROLE team_a;
SELECT eventbus.relay_topic('orders_a', 'team-a.orders');
SELECT eventbus.publish('orders_a', '{"n": 1}');
SELECT eventbus.outbox('team-a.mails', '{"m": 1}');
});
is(join(',', map { $_->{value} } @{ wait_for_kafka($bootstrap, 'team-a.orders', 1, 30) }),
	'{"n": 1}', 'allowed: the event arrives');
is(join(',', map { $_->{value} } @{ wait_for_kafka($bootstrap, 'team-a.mails', 1, 30) }),
	'{"m": 1}', 'allowed: the outbox message arrives');
my $status = relay_status($node, $db);
my $pid = $status->{worker_pid};
is($status->{skipped}, 0, 'nothing skipped so far');

# An outbox message written after the disallow by a transaction whose
# snapshot is older: outbox() still sees the entry, the relay does not.
my $sender = $node->background_psql($db);
$sender->query_safe(q{SET ROLE team_a; BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1});
is($node->safe_psql($db, q{SELECT eventbus.disallow_relay('team_a', 'team-a.*')}),
	't', 'disallow_relay() removes the entry');
$sender->query_safe(q{SELECT eventbus.outbox('team-a.mails', '{"m": 2}'); COMMIT});
$sender->quit;
$node->safe_psql($db, q{SET ROLE team_a; SELECT eventbus.publish('orders_a', '{"n": 2}')});

ok( poll_until(
		20, sub { relay_status($node, $db)->{skipped} >= 2 }),
	'the event and the outbox message after disallow_relay() are skipped');
$status = relay_status($node, $db);
note 'status: ' . encode_json($status);
is($status->{skipped}, 2, 'two skipped');
like($status->{last_skip_reason} // '', qr/not allowed to relay into Kafka topic "team-a.orders"/,
	'the reason names the Kafka topic');

# Allowed again (an exact name this time): events flow again.
$node->safe_psql($db, q{SELECT eventbus.allow_relay('team_a', 'team-a.orders')});
$node->safe_psql($db, q{SET ROLE team_a; SELECT eventbus.publish('orders_a', '{"n": 3}')});
my $orders = wait_for_kafka($bootstrap, 'team-a.orders', 2, 30);
is(join(',', map { $_->{value} } @$orders),
	'{"n": 1},{"n": 3}', 'allowed again: the next event arrives, the skipped one never does');
is(join(',', map { $_->{value} } @{ kafka_read($bootstrap, 'team-a.mails') // [] }),
	'{"m": 1}', 'the outbox message committed after the disallow was not sent');
is(relay_status($node, $db)->{worker_pid}, $pid, 'the same relay worker runs');
ok(!$node->log_contains(qr/exited with exit code|terminated by signal|TRAP:|PANIC/),
	'no worker exit or crash in the server log');

$node->stop;
$mock->stop;
note sprintf('085_relay_allowlist took %.1f s', time() - $t0);
done_testing();
