# Messages Kafka refuses for good follow their topic's on_error policy.
#
# The mock cluster refuses on demand: "topic_error secret
# TOPIC_AUTHORIZATION_FAILED" (metadata of the topic says not authorized,
# from the start)
# and "produce_errors 1 MSG_SIZE_TOO_LARGE" (the next produce request).
#
#  - relay_topic(..., on_error => 'skip'): SQLSTATE 22023.
#  - 'dead_letter': the refused event is recorded in
#    eventbus.relay_dead_letter (topic, partition, position, event id, LSN,
#    error) and the relay goes on: events of another topic published after
#    it arrive, the slot moves past it, the state is 'running'.  For an
#    unauthorized topic and for a message too large.
#  - 'dead_letter' for an event a backfill sends from the topic's tables
#    (relay_topic(..., start_at => 'earliest')): recorded, not in Kafka, and
#    the backfill goes on.  Under exactly-once the refusal aborts the Kafka
#    transaction; the relay remembers the event by its id (an event sent
#    from the tables has no commit LSN) and leaves it out of the next
#    attempt instead of sending it again.
#  - 'dead_letter' for more refusals than fit in one fixed table: 1,500
#    backfilled events, every produce request refused (the mock's
#    "produce_errors 100 MSG_SIZE_TOO_LARGE").  Under exactly-once the relay
#    remembers every one of them, not only the last 256 (it used to forget
#    the others, send them again, and so on): each event ends up in
#    relay_dead_letter or in Kafka (read_committed), never in both and
#    never in neither, and the backfill finishes.
#  - A new backfill of the topic, the cause gone, sends the backfilled
#    event refused before.
#  - 'stop': the relay waits at the refused event: the state says so,
#    last_error names the event (id, topic, position) and the error, and the
#    slot does not move past it.  Switching the topic to 'dead_letter' lets
#    the relay go on.

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

my $mock = RelayTest::MockKafka->start('--topic', 'ok:1', '--topic', 'big:1',
	'--topic', 'secret:1', '--topic', 'fill:1', '--topic', 'flood:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('refused', bootstrap => $bootstrap, start => 1);

# The metadata of "secret" refuses it before the relay first asks about it
# (when relay_topic() names it): nothing is sent there.  (The mock refuses
# in its metadata only; a real broker also refuses the produce request of
# a topic whose authorization was revoked later.)
is($mock->command('topic_error secret TOPIC_AUTHORIZATION_FAILED'),
	'ok', 'Kafka topic "secret" is not authorized');

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ok', 1);
SELECT eventbus.create_topic('big', 1);
SELECT eventbus.create_topic('secret', 1);
SELECT eventbus.relay_topic('ok');
SELECT eventbus.relay_topic('big', on_error => 'dead_letter');
SELECT eventbus.relay_topic('secret', on_error => 'dead_letter');
});

my ($rc, $out, $err) = $node->psql($db,
	"\\set VERBOSITY verbose\nSELECT eventbus.relay_topic('ok', on_error => 'skip')");
like($err, qr/ERROR:  22023: invalid on_error "skip"/,
	'an unknown on_error: SQLSTATE 22023');

sub publish_ok
{
	my ($tag, $n) = @_;
	$node->safe_psql($db,
		"SELECT count(*) FROM eventbus.publish_batch('ok', ARRAY(SELECT jsonb_build_object('tag', '$tag', 'i', i) FROM generate_series(1, $n) i))"
	);
}

sub ok_count
{
	my ($tag) = @_;
	return scalar grep { $_->{value} =~ /"tag": "$tag"/ }
	  @{ kafka_read($bootstrap, 'ok') // [] };
}

sub publish_one
{
	my ($topic, $value) = @_;
	my $pos = $node->safe_psql($db,
		"SELECT position FROM eventbus.publish('$topic', '$value')");
	return $node->safe_psql($db,
		"SELECT event_id FROM eventbus_data.$topic WHERE partition = 0 AND position = $pos");
}

sub dead_letter
{
	my ($id) = @_;
	return $node->safe_psql($db,
		"SELECT topic || '|' || kafka_topic || '|' || partition || '|' || position || '|' || error FROM eventbus.relay_dead_letter WHERE event_id = '$id'"
	);
}

publish_ok('warm', 2);
ok(poll_until(30, sub { ok_count('warm') == 2 }), 'events of "ok" are relayed');

# ---------------------------------------------------------------------------
# dead_letter: a topic the producer may not write to.

my $id1 = publish_one('secret', '{"s": 1}');
publish_ok('after-secret', 3);
my $dl;
ok(poll_until(30, sub { ($dl = dead_letter($id1)) ne '' }),
	'dead_letter: the unauthorized event is recorded in relay_dead_letter');
like($dl, qr/\Asecret\|secret\|0\|0\|.*authoriz/i,
	"... with its topic, Kafka topic, partition, position and the error ($dl)");
ok(poll_until(30, sub { ok_count('after-secret') == 3 }),
	'dead_letter: events of another topic published after it arrive');
my $after = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
ok(poll_until(20, sub { lsn_cmp(slot_confirmed_lsn($node), $after) >= 0 }),
	'dead_letter: the slot moves past the refused event');
is(relay_status($node, $db)->{state}, 'running', 'dead_letter: the relay runs');

# ---------------------------------------------------------------------------
# dead_letter: a message too large for the broker.

is($mock->command('produce_errors 1 MSG_SIZE_TOO_LARGE'),
	'ok', 'the next produce request is refused as too large');
my $id2 = publish_one('big', '{"b": 1}');
ok(poll_until(30, sub { ($dl = dead_letter($id2)) ne '' }),
	'dead_letter: the event too large is recorded in relay_dead_letter');
like($dl, qr/\Abig\|big\|0\|0\|.*(large|MSG_SIZE_TOO_LARGE)/i, "... with the error ($dl)");
publish_ok('after-big', 2);
ok(poll_until(30, sub { ok_count('after-big') == 2 }),
	'dead_letter: events of another topic published after it arrive');

# ---------------------------------------------------------------------------
# dead_letter: an event sent by a backfill, refused as too large.

$node->safe_psql($db, q{SELECT eventbus.create_topic('fill', 1)});
my $id4 = publish_one('fill', '{"f": 1}');
is($mock->command('produce_errors 1 MSG_SIZE_TOO_LARGE'),
	'ok', 'the next produce request is refused as too large');
$node->safe_psql($db,
	q{SELECT eventbus.relay_topic('fill', start_at => 'earliest', on_error => 'dead_letter')});
ok(poll_until(60, sub { dead_letter($id4) ne '' }),
	'dead_letter: the backfilled event refused is recorded in relay_dead_letter');
ok(poll_until(60, sub { $node->safe_psql($db,
	q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'fill'}) eq 'done' }),
	'dead_letter: the backfill goes on to its end');
publish_ok('after-fill', 1);
ok(poll_until(30, sub { ok_count('after-fill') == 1 }),
	'dead_letter: events of another topic published after it arrive');
my $fill = by_event_id(kafka_read($bootstrap, 'fill') // []);
ok(!exists $fill->{$id4}, 'the refused backfilled event is not in Kafka (not sent again)');

# The cause gone, a new backfill of "fill" sends the event refused before
# (under exactly-once the relay forgets a refusal once a Kafka transaction
# committed after it was used).
$node->safe_psql($db,
	q{SELECT eventbus.relay_topic('fill', start_at => 'earliest', on_error => 'dead_letter')});
ok( poll_until(
		60,
		sub {
			my $in = by_event_id(committed_view($bootstrap, kafka_read($bootstrap, 'fill') // []));
			return exists $in->{$id4};
		}),
	'a new backfill, the cause gone, sends the event Kafka refused before');

# ---------------------------------------------------------------------------
# dead_letter: more refusals in one go than a fixed table holds.

my $flood_n = 1500;
$node->safe_psql($db, qq{
SELECT eventbus.create_topic('flood', 1);
SELECT count(*) FROM eventbus.publish_batch('flood',
  ARRAY(SELECT jsonb_build_object('fl', i) FROM generate_series(1, $flood_n) i));
});
is($mock->command('produce_errors 100 MSG_SIZE_TOO_LARGE'),
	'ok', 'the next 100 produce requests are refused as too large');
$node->safe_psql($db,
	q{SELECT eventbus.relay_topic('flood', start_at => 'earliest', on_error => 'dead_letter')});
ok( poll_until(
		120,
		sub {
			$node->safe_psql($db,
				q{SELECT state FROM eventbus.relay_backfill WHERE topic = 'flood'}) eq 'done';
		}),
	'dead_letter: the backfill of 1,500 refused events finishes')
  or diag(encode_json(relay_status($node, $db)));
is($mock->command('produce_errors 0'), 'ok', 'the produce errors not used yet are forgotten');
publish_ok('after-flood', 1);
ok(poll_until(60, sub { ok_count('after-flood') == 1 }),
	'dead_letter: events of another topic published after the flood arrive');
my %dead = map { $_ => 1 } split /\n/, $node->safe_psql($db,
	q{SELECT event_id FROM eventbus.relay_dead_letter WHERE topic = 'flood'});
my $flood = by_event_id(committed_view($bootstrap, kafka_read($bootstrap, 'flood') // []));
my @all = split /\n/, $node->safe_psql($db, q{SELECT event_id FROM eventbus_data.flood});
note sprintf('flood: %d dead-lettered, %d in Kafka', scalar(keys %dead), scalar(keys %$flood));
cmp_ok(scalar(keys %dead), '>', 256, 'more than 256 events of "flood" were refused and dead-lettered');
is(scalar(grep { $dead{$_} && $flood->{$_} } @all), 0,
	'no event of "flood" is both dead-lettered and in Kafka');
is(scalar(grep { !$dead{$_} && !$flood->{$_} } @all), 0,
	'every event of "flood" is dead-lettered or in Kafka');
is(scalar(grep { $flood->{$_} && @{ $flood->{$_} } > 1 } @all), 0,
	'none of "flood" is twice in Kafka');

# ---------------------------------------------------------------------------
# stop: the relay waits at the refused event and says why.

$node->safe_psql($db,
	q{SELECT eventbus.relay_topic('secret', on_error => 'stop')});
my $before = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
my $id3 = publish_one('secret', '{"s": 3}');
publish_ok('after-stop', 1);
my $status;
ok( poll_until(
		30,
		sub {
			$status = relay_status($node, $db);
			return $status->{state} eq 'stopped at a refused message';
		}),
	'stop: state "stopped at a refused message"')
  or diag(encode_json($status));
like($status->{last_error} // '',
	qr/event \Q$id3\E of topic "secret" \(partition 0, position 1, commit LSN [0-9A-F]+\/[0-9A-F]+\) was refused by Kafka topic "secret": .*authoriz/i,
	'stop: last_error names the event, where it is, and why');
usleep(2_000_000);
my ($refused_lsn) = ($status->{last_error} // '') =~ /commit LSN ([0-9A-F]+\/[0-9A-F]+)/;
my $confirmed = slot_confirmed_lsn($node);
cmp_ok(lsn_cmp($confirmed, $refused_lsn // $before), '<=', 0,
	'stop: the slot does not move past the refused event')
  or diag("confirmed $confirmed, before the event $before, its commit LSN " . ($refused_lsn // '?'));
is(dead_letter($id3), '', 'stop: nothing recorded in relay_dead_letter');

# Switching the topic to dead_letter lets the relay go on (at its next
# attempt, after a back-off of up to 30 s).
$node->safe_psql($db,
	q{SELECT eventbus.relay_topic('secret', on_error => 'dead_letter')});
ok(poll_until(60, sub { dead_letter($id3) ne '' }),
	'after switching to dead_letter, the waiting event is recorded');
ok(poll_until(30, sub { ok_count('after-stop') >= 1 }),
	'... and the event published after it arrives');
$after = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
ok(poll_until(20, sub { lsn_cmp(slot_confirmed_lsn($node), $after) >= 0 }),
	'... and the slot moves on');
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.relay_dead_letter WHERE topic <> 'flood'}),
	'4', 'relay_dead_letter holds the four refused events, once each');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('088_relay_refused took %.1f s', time() - $t0);
done_testing();
