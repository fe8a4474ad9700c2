# Backfill and the seam of relay_topic() (issue 11).
#
#  - start_at => 'earliest' sends every retained event of the topic from its
#    tables, then the relay goes on from WAL: events published before and
#    after the call each arrive exactly once; relay_backfill says done.
#  - start_at => a timestamp sends the events published at or after it
#    (and not those before), then WAL.
#  - A transaction publishing to a topic is relayed whole or not at all
#    when relay_topic() or stop_relay() is called while it is open: the
#    call waits for it, so the mapping at its commit decides all of it.
#  - A backfill with a transaction open during relay_topic(): its events
#    arrive once (from the table or from WAL, never both, never neither).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use RelayTest;

my $mock = RelayTest::MockKafka->start('--topic', 'bf:2', '--topic', 'bt:1',
	'--topic', 'tx:1', '--topic', 'ty:1', '--topic', 'bs:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('backfill', bootstrap => $bootstrap, start => 1);
my $db = 'postgres';

# Events of a topic in the database: event id => 1.
sub events
{
	my ($topic) = @_;
	my %ids = map { $_ => 1 } split /\n/, $node->safe_psql($db,
		"SELECT event_id FROM eventbus_data.\"$topic\"");
	return \%ids;
}

# Checks that Kafka topic $topic holds exactly the local events of $topic,
# each once.
sub exactly_once
{
	my ($topic, $what) = @_;
	my $want = events($topic);
	my $msgs = wait_for_kafka($bootstrap, $topic, scalar(keys %$want), 30);
	usleep(500_000);
	$msgs = kafka_read($bootstrap, $topic);
	my $by = by_event_id($msgs);
	my @missing = grep { !$by->{$_} } keys %$want;
	my @dup = grep { @{ $by->{$_} } > 1 } keys %$by;
	my @unknown = grep { !$want->{$_} } keys %$by;
	is(scalar(@missing), 0, "$what: none missing") or diag("missing: @missing");
	is(scalar(@dup), 0, "$what: no duplicate") or diag("duplicates: @dup");
	is(scalar(@unknown), 0, "$what: nothing else");
	return $by;
}

# 'earliest'
$node->safe_psql($db, q{
SELECT eventbus.create_topic('bf', 2);
SELECT count(*) FROM eventbus.publish_batch('bf', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 1500) i),
                                            keys => ARRAY(SELECT 'k' || i FROM generate_series(1, 1500) i));
SELECT eventbus.relay_topic('bf', start_at => 'earliest');
SELECT count(*) FROM eventbus.publish_batch('bf', ARRAY(SELECT jsonb_build_object('j', i) FROM generate_series(1, 20) i),
                                            keys => ARRAY(SELECT 'k' || i FROM generate_series(1, 20) i));
});
my $by = exactly_once('bf', "start_at 'earliest'");
my ($one) = @{ $by->{ (keys %$by)[0] } };
ok(defined $one->{headers}{'eventbus-position'} && defined $one->{headers}{'eventbus-lsn'},
	'backfilled and relayed messages carry the eventbus- headers');
ok(poll_until(30, sub { $node->safe_psql($db,
	q{SELECT count(*) FILTER (WHERE state = 'done') || '/' || count(*) FROM eventbus.relay_backfill WHERE topic = 'bf'}) eq '2/2' }),
	'relay_backfill: both partitions done');
is($node->safe_psql($db, q{SELECT sum(remaining) FROM eventbus.relay_backfill WHERE topic = 'bf'}), '0',
	'... nothing remaining');
is($node->safe_psql($db, q{SELECT b->>'state', b->>'remaining', b->>'partitions_done', b->>'partitions', b->>'completed_at' IS NOT NULL
	FROM (SELECT backfill->'bf' AS b FROM eventbus.relay_status) s}), 'done|0|2|2|t',
	'relay_status.backfill: the topic done, nothing remaining, both partitions');

# a timestamp
$node->safe_psql($db, q{
SELECT eventbus.create_topic('bt', 1);
SELECT count(*) FROM eventbus.publish_batch('bt', ARRAY(SELECT jsonb_build_object('phase', 'old', 'i', i) FROM generate_series(1, 10) i));
CREATE TABLE mark AS SELECT clock_timestamp() AS at;
});
usleep(20_000);
$node->safe_psql($db, q{
SELECT count(*) FROM eventbus.publish_batch('bt', ARRAY(SELECT jsonb_build_object('phase', 'new', 'i', i) FROM generate_series(1, 10) i));
SELECT eventbus.relay_topic('bt', start_at => (SELECT at::text FROM mark));
SELECT eventbus.publish('bt', '{"phase": "later"}');
});
my $msgs = wait_for_kafka($bootstrap, 'bt', 11, 30);
usleep(500_000);
$msgs = kafka_read($bootstrap, 'bt');
my %phase;
$phase{ ($_->{value} =~ /"phase": "(\w+)"/)[0] }++ foreach @$msgs;
is($phase{old} // 0, 0, 'start_at timestamp: events before it are not sent');
is($phase{new} // 0, 10, '... events at or after it are, once');
is($phase{later} // 0, 1, '... and then WAL');

# A transaction spanning relay_topic(): decided by the mapping at its commit.
$node->safe_psql($db, q{SELECT eventbus.create_topic('tx', 1); SELECT eventbus.create_topic('ty', 1); SELECT eventbus.relay_topic('ty');});
sub spanning
{
	my ($topic, $call) = @_;
	my $a = $node->background_psql($db);
	my $b = $node->background_psql($db);
	$a->query_safe(qq{BEGIN; SELECT count(*) FROM eventbus.publish_batch('$topic', ARRAY(SELECT jsonb_build_object('part', 1, 'i', i) FROM generate_series(1, 5) i))});
	$b->query_until(qr/calling/, "\\echo calling\n$call;\n");
	# the call waits for A (the old code did not)
	poll_until(5, sub { $node->safe_psql($db,
		q{SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%relay%'}) eq '1' });
	$a->query_safe(qq{SELECT count(*) FROM eventbus.publish_batch('$topic', ARRAY(SELECT jsonb_build_object('part', 2, 'i', i) FROM generate_series(1, 5) i)); COMMIT});
	$b->query_safe('SELECT 1');
	$a->quit;
	$b->quit;
	$node->safe_psql($db, qq{SELECT eventbus.relay_topic('$topic', start_at => 'now'); SELECT eventbus.publish('$topic', '{"marker": true}')});
}
spanning('tx', q{SELECT eventbus.relay_topic('tx')});
$msgs = wait_for_kafka($bootstrap, 'tx', 1, 30);
usleep(1_000_000);
$msgs = kafka_read($bootstrap, 'tx');
is(scalar(grep { $_->{value} =~ /"part"/ } @$msgs), 0,
	'a transaction open across relay_topic() is not relayed in part (the mapping at its commit: none)');
is(scalar(grep { $_->{value} =~ /"marker"/ } @$msgs), 1, '... later events are');

spanning('ty', q{SELECT eventbus.stop_relay('ty')});
$msgs = wait_for_kafka($bootstrap, 'ty', 11, 30);
usleep(1_000_000);
$msgs = kafka_read($bootstrap, 'ty');
is(scalar(grep { $_->{value} =~ /"part"/ } @$msgs), 10,
	'a transaction open across stop_relay() is relayed whole (the mapping at its commit: relayed)');

# A backfill while a publishing transaction is open: the seam.
$node->safe_psql($db, q{
SELECT eventbus.create_topic('bs', 1);
SELECT count(*) FROM eventbus.publish_batch('bs', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 50) i));
});
my $a = $node->background_psql($db);
my $b = $node->background_psql($db);
$a->query_safe(q{BEGIN; SELECT eventbus.publish('bs', '{"open": 1}')});
$node->safe_psql($db, q{SELECT eventbus.publish('bs', '{"committed": 1}')});
$b->query_until(qr/calling/, "\\echo calling\nSELECT eventbus.relay_topic('bs', start_at => 'earliest');\n");
usleep(200_000);
$a->query_safe(q{SELECT eventbus.publish('bs', '{"open": 2}'); COMMIT});
$b->query_safe('SELECT 1');
$a->quit;
$b->quit;
$node->safe_psql($db, q{SELECT eventbus.publish('bs', '{"after": 1}')});
exactly_once('bs', 'backfill with a transaction open at the call');

# start_at's words in any case, with spaces around (as PostgreSQL reads
# 'NOW' for a timestamp): 'NOW' is the word, no backfill; ' Earliest ' the
# word too; anything else that is not a timestamp is refused.
$node->safe_psql($db, q{
SELECT eventbus.create_topic('kw_now', 1);
SELECT eventbus.publish('kw_now', '{"before": true}');
SELECT eventbus.relay_topic('kw_now', start_at => 'NOW');
SELECT eventbus.create_topic('kw_early', 1);
SELECT eventbus.publish('kw_early', '{"before": true}');
SELECT eventbus.relay_topic('kw_early', start_at => ' Earliest ');
});
is($node->safe_psql($db, q{SELECT count(*) FROM eventbus.relay_backfill WHERE topic = 'kw_now'}),
	'0', "start_at 'NOW': no backfill");
ok(backfill_done($node, $db, 'kw_early', 30), "start_at ' Earliest ': a backfill, done");
my ($kw_rc, $kw_out, $kw_err) = $node->psql($db,
	"\\set VERBOSITY verbose\nSELECT eventbus.relay_topic('kw_now', start_at => 'soonest')");
like($kw_err, qr/ERROR:  22023: invalid start_at: "soonest"/, 'an unknown word is refused');

ok(!$node->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
$node->stop;
$mock->stop;
done_testing();
