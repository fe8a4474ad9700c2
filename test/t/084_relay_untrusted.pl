# The relay trusts only what the extension wrote, and nothing in WAL can
# stop it (issue 9, items 5, 6 and 7).
#
#  - A role with CREATE on eventbus_data creates tables named like segment
#    tables of a relayed topic ("orders$99"), one with the event columns and
#    one with wrong column types, and inserts rows: nothing of them reaches
#    Kafka, and the relay does not crash (only tables registered in
#    eventbus.segment are relayed, by OID).
#  - A registered segment table whose columns were changed, and a row with
#    a partition out of range, are skipped and counted, not relayed.
#  - Logical messages with the outbox prefix that are not outbox messages
#    (garbage, a truncated one) are skipped and counted.
#  - Outbox messages not written by eventbus.outbox() (the old
#    unauthenticated format, a wrong authentication code) are skipped; the
#    relay key is not readable by other roles.
#  - After all of that, the relay is the same worker (no restart loop, no
#    "exited with exit code" in the log) and relays the good events and
#    outbox messages committed after the bad content; relay_status shows
#    the skips (count, last LSN, reason).

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

my $mock = RelayTest::MockKafka->start('--topic', 'orders:1', '--topic', 'victim:1',
	'--topic', 'ob:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('untrusted', bootstrap => $bootstrap, start => 1);

$node->safe_psql(
	$db, q{
CREATE ROLE attacker LOGIN;
GRANT CREATE ON SCHEMA eventbus_data TO attacker;
SELECT eventbus.create_topic('orders', 1);
SELECT eventbus.relay_topic('orders');
SELECT eventbus.create_topic('victim', 1);
SELECT eventbus.relay_topic('victim');
SELECT eventbus.publish('orders', '{"good": 1}');
});
is(scalar(@{ wait_for_kafka($bootstrap, 'orders', 1, 30) }),
	1, 'a published event is relayed');
my $pid = relay_status($node, $db)->{worker_pid};
my $log_offset = -s $node->logfile;

# ---------------------------------------------------------------------------
# Item 5: tables named like segments, not registered.

my $forged_row = q{(0, 1000, gen_random_uuid(), now(), 'k', '{"forged": 1}', NULL, NULL)};
$node->safe_psql(
	$db, qq{
SET ROLE attacker;
CREATE TABLE eventbus_data."orders\$99" (partition int, position bigint, event_id uuid,
    created_at timestamptz, key text, value jsonb, headers jsonb, idempotency_key text);
INSERT INTO eventbus_data."orders\$99" VALUES $forged_row;
CREATE TABLE eventbus_data."orders\$98" (partition text, position text, event_id text,
    created_at text, key int, value int, headers int, idempotency_key int);
INSERT INTO eventbus_data."orders\$98" VALUES ('x', 'y', 'z', 'w', 1, 2, 3, 4);
});

# ---------------------------------------------------------------------------
# Item 7: a registered segment whose columns changed, a row out of range,
# and logical messages with the outbox prefix that are no outbox message.

my $victim_seg = $node->safe_psql($db,
	q{SELECT s.table_oid FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id) WHERE t.topic = 'victim' ORDER BY s.segment DESC LIMIT 1});
my $orders_seg = $node->safe_psql($db,
	q{SELECT s.table_oid FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id) WHERE t.topic = 'orders' ORDER BY s.segment DESC LIMIT 1});
$node->safe_psql(
	$db, qq{
ALTER TABLE $victim_seg ADD COLUMN extra int;
INSERT INTO $victim_seg VALUES (0, 1000, gen_random_uuid(), now(), 'k', '{"bad-columns": 1}', NULL, NULL, 7);
INSERT INTO $orders_seg VALUES (57, 1000, gen_random_uuid(), now(), 'k', '{"bad-partition": 1}', NULL, NULL);
SELECT pg_logical_emit_message(true, 'pg_eventbus.outbox', 'garbage');
SELECT pg_logical_emit_message(true, 'pg_eventbus.outbox', '\\x01ffffff7f'::bytea);
SELECT pg_logical_emit_message(true, 'pg_eventbus.outbox', '\\x01'::bytea);
});

# ---------------------------------------------------------------------------
# Item 6: well-formed outbox messages that eventbus.outbox() did not write:
# one in the format of old (unauthenticated) and one with a wrong
# authentication code, both for Kafka topic "victim".  The relay key cannot
# be read by the attacker.

sub forged_body
{
	my ($topic, $value) = @_;
	return pack('l<', length($topic)) . $topic . pack('l<', -1) . ("\x11" x 16)
	  . pack('q<', 0) . pack('l<', -1) . pack('l<', length($value)) . $value;
}
my $old_format = pack('C', 1) . forged_body('victim', '{"forged": "outbox"}');
my $bad_mac = pack('C', 2) . ("\0" x 32) . pack('L<', 10) . forged_body('victim', '{"forged": "mac"}');
my ($ret, $out, $err) = $node->psql($db,
	'SET ROLE attacker; SELECT * FROM eventbus.relay_key');
like($err, qr/permission denied for table relay_key/, 'the attacker cannot read the relay key');
$node->safe_psql(
	$db, sprintf(q{
SET ROLE attacker;
SELECT pg_logical_emit_message(true, 'pg_eventbus.outbox', '\x%s'::bytea);
SELECT pg_logical_emit_message(true, 'pg_eventbus.outbox', '\x%s'::bytea);
}, unpack('H*', $old_format), unpack('H*', $bad_mac)));

# Good content afterwards.
$node->safe_psql(
	$db, q{
SELECT eventbus.publish('orders', '{"good": 2}');
SELECT eventbus.outbox('ob', '{"good": "outbox"}');
});

my $orders = wait_for_kafka($bootstrap, 'orders', 2, 30);
is(join(',', map { $_->{value} } @$orders),
	'{"good": 1},{"good": 2}',
	'Kafka topic orders holds the published events and nothing forged');
is(join(',', map { $_->{value} } @{ wait_for_kafka($bootstrap, 'ob', 1, 30) }),
	'{"good": "outbox"}', 'the outbox message after the bad content arrives');
ok(poll_until(10, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'nothing left in flight');
is(scalar(@{ kafka_read($bootstrap, 'victim') // [] }),
	0, 'nothing of the altered segment table reached Kafka');

my $status = relay_status($node, $db);
note 'status: ' . encode_json($status);
is($status->{worker_pid}, $pid, 'the same relay worker runs');
is($status->{state}, 'running', 'relay_status: running');
is($status->{skipped}, 7,
	'relay_status: seven skipped (altered segment, partition out of range, five messages)');
like($status->{last_skip_reason} // '', qr/authentication code does not verify/,
	'relay_status: the last skip reason says the code does not verify');
ok(defined $status->{last_skipped_lsn}, 'relay_status: the last skipped LSN');
my $log = log_since($node, $log_offset);
like($log, qr/skipped content at .* that cannot be relayed/, 'the skip is logged');
unlike($log, qr/exited with exit code|terminated by signal|TRAP:|PANIC/,
	'no worker exit or crash in the server log');

$node->stop;
$mock->stop;
note sprintf('084_relay_untrusted took %.1f s', time() - $t0);
done_testing();
