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
#  - 'last_acknowledged' starts below a transaction that held a lower
#    position while later ones were acknowledged, and committed only after
#    the slot was lost: its event is not missing (the events acknowledged
#    above it are sent again).  A transaction prepared before a restart
#    (not registered again, so not in the horizon) holds that position
#    back too: the resend is refused as not known rather than skipping it.
#    So does a slot the relay created anew while its warning is not
#    resolved: what committed before it was never decoded.
#  - 'last_acknowledged' after a crash and restart: the relay saved the
#    positions (eventbus.relay_acknowledged); the resend starts there.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'ev:2', '--topic', 'lost:1', '--topic', 'grown:4',
	'--topic', 'blocked:1', '--topic', 'late:1', '--topic', 'held:1', '--topic', 'prep:1', '--topic', 'gapx:1', '--topic', 'rst:1');
my $bootstrap = $mock->bootstrap;
my $db = 'postgres';
# the brokers are set, the extension is not created yet: no relay, no slot
my $node = relay_node('nogap', bootstrap => $bootstrap, conf => "max_prepared_transactions = 4\n");
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

# A transaction holds position 0 while positions 1 to 3 are relayed and
# acknowledged; the slot is lost, then it commits.  The warning of the
# slots replaced above is resolved first: until then the relay keeps the
# positions a resend starts from where they were before the loss.
$node->safe_psql($db, q{
SELECT eventbus.resolve_relay_slot_warning();
SELECT eventbus.create_topic('held', 1);
SELECT eventbus.relay_topic('held');
});
my $holder = $node->background_psql($db);
$holder->query_safe(q{BEGIN; SELECT eventbus.publish('held', '{"phase": "held"}')});
$node->safe_psql($db, q{
SELECT count(*) FROM eventbus.publish_batch('held', ARRAY(SELECT jsonb_build_object('phase', 'acked', 'i', i) FROM generate_series(1, 3) i));
});
is(scalar(@{ wait_for_kafka($bootstrap, 'held', 3) }), 3, 'the events above the open transaction were relayed');
# the relay samples the partition's horizon within milliseconds of the
# acknowledgements (not visible from SQL): leave it a moment
usleep(3_000_000);
ok(relay_stop($node, $db), 'the relay stopped');
$slot = $node->safe_psql($db, q{SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'});
$node->safe_psql($db, "SELECT pg_drop_replication_slot('$slot')");
$holder->query_safe('COMMIT');
$holder->quit;
$node->safe_psql($db, q{
SELECT count(*) FROM eventbus.publish_batch('held', ARRAY(SELECT jsonb_build_object('phase', 'gap', 'i', i) FROM generate_series(1, 2) i));
});
($rc, $out, $err) = $node->psql($db, q{SELECT eventbus.relay_topic('held', start_at => 'last_acknowledged')});
is($rc, 0, "relay_topic(start_at => 'last_acknowledged') after the slot was lost") or diag($err);
is($node->safe_psql($db, q{SELECT first_position FROM eventbus.relay_backfill WHERE topic = 'held'}),
	'0', '... from the position the open transaction held, not after the highest acknowledged');
ok(relay_start($node, $db, $bootstrap), 'the relay runs again, with a new slot');
$node->safe_psql($db, q{SELECT eventbus.publish('held', '{"phase": "after"}')});
{
	my $want = events('held');
	wait_for_kafka($bootstrap, 'held', scalar(keys %$want) + 3, 60);
	usleep(500_000);
	my $by = by_event_id(kafka_read($bootstrap, 'held'));
	my @missing = grep { !$by->{$_} } keys %$want;
	is(scalar(@missing), 0, 'the event of the transaction that committed after the slot was lost arrives')
	  or diag("missing: @missing");
	my %again = map { $_ => 1 } grep { @{ $by->{$_} } > 1 } keys %$by;
	my %acked = map { $_ => 1 } split /\n/, $node->safe_psql($db,
		q{SELECT event_id FROM eventbus_data."held" WHERE value->>'phase' = 'acked'});
	is_deeply(\%again, \%acked, 'only the events acknowledged above it were sent again, once');
	ok(!grep({ @{ $by->{$_} } > 2 } keys %$by), 'no event was sent three times');
}

# A prepared transaction holds position 0 of 'prep' across a restart; after
# it positions 1 to 3 are acknowledged, the slot is lost, then it commits.
ok(poll_until(60, sub { $node->safe_psql($db,
	q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'held'}) eq 'done' }), "the resend of 'held' is done");
# 'gapx': 3 events acknowledged; the slot is lost, 2 events commit, the
# relay creates a new slot (with a warning) and relays 2 more.  A resend
# forgotten for 'gapx' and asked for after a second loss starts at 3, not
# above the 2 events the new slot never decoded.
$node->safe_psql($db, q{
SELECT eventbus.resolve_relay_slot_warning();
SELECT eventbus.create_topic('gapx', 1);
SELECT eventbus.relay_topic('gapx');
SELECT count(*) FROM eventbus.publish_batch('gapx', ARRAY(SELECT jsonb_build_object('phase', 'acked', 'i', i) FROM generate_series(1, 3) i));
});
is(scalar(@{ wait_for_kafka($bootstrap, 'gapx', 3) }), 3, "'gapx': relayed before the slot was lost");
usleep(3_000_000);
ok(relay_stop($node, $db), 'the relay stopped');
$slot = $node->safe_psql($db, q{SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'});
$node->safe_psql($db, "SELECT pg_drop_replication_slot('$slot')");
$node->safe_psql($db, q{
SELECT count(*) FROM eventbus.publish_batch('gapx', ARRAY(SELECT jsonb_build_object('phase', 'gap', 'i', i) FROM generate_series(1, 2) i));
});
ok(relay_start($node, $db, $bootstrap), 'the relay runs with a slot it created anew');
isnt($node->safe_psql($db, q{SELECT count(*) FROM eventbus.relay_slot WHERE warning IS NOT NULL}), '0',
	'... and warns of it');
$node->safe_psql($db, q{
SELECT count(*) FROM eventbus.publish_batch('gapx', ARRAY(SELECT jsonb_build_object('phase', 'new slot', 'i', i) FROM generate_series(1, 2) i));
});
is(scalar(@{ wait_for_kafka($bootstrap, 'gapx', 5) }), 5, "'gapx': relayed from the new slot");
usleep(3_000_000);
ok(relay_stop($node, $db), 'the relay stopped');
$slot = $node->safe_psql($db, q{SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'});
$node->safe_psql($db, "SELECT pg_drop_replication_slot('$slot')");
($rc, $out, $err) = $node->psql($db, q{SELECT eventbus.relay_topic('gapx', start_at => 'last_acknowledged')});
is($rc, 0, "'gapx': relay_topic(start_at => 'last_acknowledged') after the second loss") or diag($err);
is($node->safe_psql($db, q{SELECT first_position FROM eventbus.relay_backfill WHERE topic = 'gapx'}),
	'3', '... from before the events the replacing slot never decoded');
ok(relay_start($node, $db, $bootstrap), 'the relay runs again');
{
	my $want = events('gapx');
	wait_for_kafka($bootstrap, 'gapx', scalar(keys %$want) + 2, 60);
	usleep(500_000);
	my $by = by_event_id(kafka_read($bootstrap, 'gapx'));
	my @missing = grep { !$by->{$_} } keys %$want;
	is(scalar(@missing), 0, "'gapx': none missing") or diag("missing: @missing");
}
ok(poll_until(60, sub { $node->safe_psql($db,
	q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'gapx'}) eq 'done' }), "the resend of 'gapx' is done");

# 'rst': 3 events acknowledged, the server crashes and starts again, the
# slot is lost, 2 events commit: the resend starts at 3 (before, the
# positions were in shared memory only: "not known").
$node->safe_psql($db, q{
SELECT eventbus.resolve_relay_slot_warning();
SELECT eventbus.create_topic('rst', 1);
SELECT eventbus.relay_topic('rst');
SELECT count(*) FROM eventbus.publish_batch('rst', ARRAY(SELECT jsonb_build_object('phase', 'acked', 'i', i) FROM generate_series(1, 3) i));
});
is(scalar(@{ wait_for_kafka($bootstrap, 'rst', 3) }), 3, "'rst': relayed before the crash");
usleep(3_000_000);
$node->stop('immediate');
$node->start;
ok(wait_relay_running($node, $db, 60), 'the relay runs after the crash');
ok(relay_stop($node, $db), 'the relay stopped');
$slot = $node->safe_psql($db, q{SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'});
$node->safe_psql($db, "SELECT pg_drop_replication_slot('$slot')");
$node->safe_psql($db, q{
SELECT count(*) FROM eventbus.publish_batch('rst', ARRAY(SELECT jsonb_build_object('phase', 'gap', 'i', i) FROM generate_series(1, 2) i));
});
($rc, $out, $err) = $node->psql($db, q{SELECT eventbus.relay_topic('rst', start_at => 'last_acknowledged')});
is($rc, 0, "'rst': relay_topic(start_at => 'last_acknowledged') after a crash and restart") or diag($err);
is($node->safe_psql($db, q{SELECT first_position FROM eventbus.relay_backfill WHERE topic = 'rst'}),
	'3', '... from the position the relay saved');
ok(relay_start($node, $db, $bootstrap), 'the relay runs again');
if ($node->safe_psql($db, 'SHOW eventbus.relay_delivery') eq 'exactly_once')
{
	exactly_once('rst', "after a crash and a lost slot, relay_topic(start_at => 'last_acknowledged')");
}
else
{
	# at-least-once: after the crash the relay sends again what its slot had
	# not saved as confirmed, so only "none missing" holds
	my $want = events('rst');
	wait_for_kafka($bootstrap, 'rst', scalar(keys %$want), 60);
	usleep(500_000);
	my $by = by_event_id(kafka_read($bootstrap, 'rst'));
	my @missing = grep { !$by->{$_} } keys %$want;
	is(scalar(@missing), 0, "after a crash and a lost slot, relay_topic(start_at => 'last_acknowledged'): none missing (at-least-once)")
	  or diag("missing: @missing");
}
ok(poll_until(60, sub { $node->safe_psql($db,
	q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'rst'}) eq 'done' }), "the resend of 'rst' is done");

$node->safe_psql($db, q{
SELECT eventbus.resolve_relay_slot_warning();
SELECT eventbus.create_topic('prep', 1);
SELECT eventbus.relay_topic('prep');
BEGIN;
SELECT eventbus.publish('prep', '{"phase": "prepared"}');
PREPARE TRANSACTION 'prep_before_restart';
});
$node->restart;
ok(wait_relay_running($node, $db, 60), 'the relay runs after the restart');
$node->safe_psql($db, q{
SELECT count(*) FROM eventbus.publish_batch('prep', ARRAY(SELECT jsonb_build_object('phase', 'acked', 'i', i) FROM generate_series(1, 3) i));
});
is(scalar(@{ wait_for_kafka($bootstrap, 'prep', 3) }), 3, 'the events above the prepared transaction were relayed');
usleep(3_000_000);
ok(relay_stop($node, $db), 'the relay stopped');
$slot = $node->safe_psql($db, q{SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'});
$node->safe_psql($db, "SELECT pg_drop_replication_slot('$slot')");
$node->safe_psql($db, q{COMMIT PREPARED 'prep_before_restart'});
($rc, $out, $err) = $node->psql($db, q{SELECT eventbus.relay_topic('prep', start_at => 'last_acknowledged')});
if ($rc == 0)
{
	is($node->safe_psql($db, q{SELECT first_position FROM eventbus.relay_backfill WHERE topic = 'prep'}),
		'0', 'a transaction prepared before the restart: the resend starts at its position');
}
else
{
	like($err, qr/the last position Kafka acknowledged of partition 0 of topic "prep" is not known/,
		'a transaction prepared before the restart: the resend is refused as not known, not started above it');
}

ok(!$node->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
# the relay's own statements (saving positions, reading the slot warning)
# never failed: an ERROR of a background process has no application name
my @worker_errors = grep { /^\S+ \S+ UTC \[\d+\] ERROR:/ } split /\n/, slurp_file($node->logfile);
is(scalar(@worker_errors), 0, 'no ERROR of a background process') or diag(join("\n", @worker_errors[0 .. ($#worker_errors < 4 ? $#worker_errors : 4)]));
$node->stop;
$mock->stop;
done_testing();
