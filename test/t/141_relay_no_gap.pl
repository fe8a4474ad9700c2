# No gap at the start of the relay, and a resend after the slot was lost
# (issue 11).
#
#  - relay_topic('now') called before the relay has its slot (here: while
#    it creates it, held back by an open transaction): every event
#    committed after the call arrives in Kafka exactly once.
#  - After the slot was lost (dropped while the relay was stopped; what a
#    promotion on 15/16 amounts to), relay_topic(start_at =>
#    'last_acknowledged') before the relay has a new slot sends again what
#    Kafka misses: nothing is missing, nothing is sent twice.
#  - stop_relay() ends a backfill.
#  - A topic given more partitions (alter_topic) after relay_topic() and
#    before the relay has its slot: the events of the new partitions
#    published meanwhile arrive too, exactly once.
#  - A backfill that cannot be sent (its owner may no longer relay) does
#    not hold back a later one of another topic, and relay_status says why
#    it waits.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:2', '--topic', 'lost:1', '--topic', 'grown:4',
	'--topic', 'blocked:1', '--topic', 'late:1');
my $bootstrap = $mock->bootstrap;
my $db = 'postgres';
# the brokers are set, the extension is not created yet: no relay, no slot
my $node = relay_node('nogap', bootstrap => $bootstrap);
$node->start;

# Events of a topic: event id => 1.
sub events
{
	my ($topic) = @_;
	return { map { $_ => 1 } split /\n/, $node->safe_psql($db,
		"SELECT event_id FROM eventbus_data.\"$topic\"") };
}

sub exactly_once
{
	my ($topic, $what) = @_;
	my $want = events($topic);
	my $msgs = wait_for_kafka($bootstrap, $topic, scalar(keys %$want), 60);
	usleep(500_000);
	$msgs = kafka_read($bootstrap, $topic);
	my $by = by_event_id($msgs);
	my @missing = grep { !$by->{$_} } keys %$want;
	my @dup = grep { @{ $by->{$_} } > 1 } keys %$by;
	is(scalar(@missing), 0, "$what: none missing (of " . scalar(keys %$want) . ')')
	  or diag("missing: @missing");
	is(scalar(@dup), 0, "$what: no duplicate") or diag("duplicates: @dup");
}

# An open transaction with an xid holds back the creation of the slot
# (its consistent point waits for it).
my $blocker = $node->background_psql($db);
$blocker->query_safe(q{CREATE TABLE hold (x int); BEGIN; INSERT INTO hold VALUES (1)});
$node->safe_psql($db, q{
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('ev', 2);
});
my ($rc, $out, $err) = $node->psql($db, q{SELECT eventbus.relay_topic('ev')});
like($err, qr/NOTICE:  the relay has not started in this database yet/, 'relay_topic before the slot: a NOTICE');
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.relay_backfill WHERE topic = 'ev' AND handover IS NULL}),
	'2', '... and a handover the relay decides, per partition');
ok(poll_until(30, sub { $node->safe_psql($db, q{SELECT state FROM eventbus.relay_status}) eq 'creating slot' }),
	'the relay is creating its slot');
foreach my $i (1 .. 40)
{
	$node->safe_psql($db, "SELECT eventbus.publish('ev', '{\"i\": $i}', key => 'k$i')");
}
$blocker->query_safe('COMMIT');
$blocker->quit;
ok(wait_relay_running($node, $db, 60), 'the relay runs');
$node->safe_psql($db, q{SELECT eventbus.publish('ev', '{"after": 1}')});
exactly_once('ev', 'relay_topic() while the slot was being created');
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.relay_backfill WHERE topic = 'ev' AND state = 'done'}),
	'2', 'relay_backfill: handover decided, done');

# The slot is lost while the relay does not run; events commit meanwhile.
$node->safe_psql($db, q{
SELECT eventbus.create_topic('lost', 1);
SELECT eventbus.relay_topic('lost');
SELECT count(*) FROM eventbus.publish_batch('lost', ARRAY(SELECT jsonb_build_object('phase', 'before', 'i', i) FROM generate_series(1, 5) i));
});
is(scalar(@{ wait_for_kafka($bootstrap, 'lost', 5) }), 5, 'relayed before the slot was lost');
my $slot = $node->safe_psql($db, q{SELECT slot_name FROM eventbus.relay_status});
ok(relay_stop($node, $db), 'the relay stopped');
$node->safe_psql($db, "SELECT pg_drop_replication_slot('$slot')");
$node->safe_psql($db, q{
SELECT count(*) FROM eventbus.publish_batch('lost', ARRAY(SELECT jsonb_build_object('phase', 'gap', 'i', i) FROM generate_series(1, 5) i));
});
# the resend, before the relay replaces the slot: from the last position
# Kafka acknowledged, up to where the new slot takes over
($rc, $out, $err) = $node->psql($db, q{SELECT eventbus.relay_topic('lost', start_at => 'last_acknowledged')});
is($rc, 0, "relay_topic(start_at => 'last_acknowledged') while the relay has no slot");
is($node->safe_psql($db, q{SELECT first_position || '/' || coalesce(handover::text, 'pending') FROM eventbus.relay_backfill WHERE topic = 'lost'}),
	'5/pending', '... from the position after the last acknowledged one');
ok(relay_start($node, $db, $bootstrap), 'the relay runs again, with a new slot');
$node->safe_psql($db, q{SELECT eventbus.publish('lost', '{"phase": "after"}')});
exactly_once('lost', "after the slot was lost, relay_topic(start_at => 'last_acknowledged')");
ok(poll_until(30, sub { $node->safe_psql($db,
	q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'lost'}) eq 'done' }), '... done');

# stop_relay ends the backfill
$node->safe_psql($db, q{SELECT eventbus.stop_relay('lost')});
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.relay_backfill WHERE topic = 'lost'}), '0',
	'stop_relay() ends the backfill');

# A topic that grows while its backfill waits for the relay's slot: the
# partitions added since relay_topic() get their own backfill.
ok(relay_stop($node, $db), 'the relay stopped again');
$slot = $node->safe_psql($db, q{SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'});
$node->safe_psql($db, "SELECT pg_drop_replication_slot('$slot')");
$node->safe_psql($db, q{SELECT eventbus.create_topic('grown', 2)});
($rc, $out, $err) = $node->psql($db, q{SELECT eventbus.relay_topic('grown')});
is($rc, 0, 'relay_topic() while the relay has no slot');
$node->safe_psql($db, q{
SELECT eventbus.alter_topic('grown', partitions => 4);
SELECT count(*) FROM eventbus.publish_batch('grown',
	ARRAY(SELECT jsonb_build_object('phase', 'grown', 'i', i) FROM generate_series(1, 40) i),
	ARRAY(SELECT 'k' || i FROM generate_series(1, 40) i));
});
is($node->safe_psql($db, q{SELECT count(DISTINCT partition) FROM eventbus_data."grown" WHERE partition >= 2}),
	'2', 'events were published to both new partitions');
ok(relay_start($node, $db, $bootstrap), 'the relay runs again, with a new slot');
$node->safe_psql($db, q{SELECT eventbus.publish('grown', '{"phase": "after"}', key => 'after')});
exactly_once('grown', 'a topic grown after relay_topic(), before the slot');
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.relay_backfill WHERE topic = 'grown'}),
	'4', '... with a backfill of each of its 4 partitions');

# The oldest backfill cannot be sent: a later one goes on regardless.
ok(relay_stop($node, $db), 'the relay stopped once more');
$node->safe_psql($db, q{
CREATE ROLE team_b LOGIN;
GRANT CREATE ON SCHEMA eventbus_data TO team_b;
SELECT eventbus.allow_relay('team_b', 'blocked');
SET ROLE team_b;
SELECT eventbus.create_topic('blk', 1);
SELECT count(*) FROM eventbus.publish_batch('blk', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 5) i));
SELECT eventbus.relay_topic('blk', 'blocked', start_at => 'earliest');
RESET ROLE;
SELECT eventbus.disallow_relay('team_b', 'blocked');
SELECT eventbus.create_topic('late', 1);
SELECT count(*) FROM eventbus.publish_batch('late', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 5) i));
SELECT eventbus.relay_topic('late', start_at => 'earliest');
});
ok(relay_start($node, $db, $bootstrap), 'the relay runs again');
ok(poll_until(60, sub { $node->safe_psql($db,
	q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'late'}) eq 'done' }),
	'the later backfill is done while the older one cannot be sent');
exactly_once('late', 'a backfill behind one that cannot be sent');
isnt($node->safe_psql($db, q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'blk'}), 'done',
	'the backfill that cannot be sent waits');
like($node->safe_psql($db, q{SELECT last_error FROM eventbus.relay_status}),
	qr/backfill of topic "blk" waits: the owner of topic "blk" is not allowed to relay/,
	'relay_status says why it waits');

ok(!$node->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
$node->stop;
$mock->stop;
done_testing();
