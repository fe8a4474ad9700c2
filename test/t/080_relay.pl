# The Kafka relay without failures, against the mock Kafka cluster.
#
# Four pgbench clients publish a few thousand events to three relayed
# topics, single and in batches, with keys and headers, and send outbox
# messages; some transactions roll back entirely, some roll a savepoint
# back.  Two more sessions interleave so that commit order differs from
# the order in which they wrote.  Then, read back from Kafka with kcat:
#
#  - every committed event of a relayed topic arrives exactly once (no
#    duplicates without failures), with its key, value, timestamp
#    (created_at), its own headers and eventbus-event-id (= event_id),
#    eventbus-topic, -partition, -position and -lsn (one LSN per
#    transaction, never decreasing within a Kafka partition);
#  - the Kafka partition is the local one when the Kafka topic has as many
#    partitions, else Kafka's murmur2 partition of the key;
#  - per key, positions increase with the Kafka offset (each key is written
#    by one session);
#  - nothing of a rolled-back transaction or savepoint arrives;
#  - outbox messages arrive iff their transaction committed, in commit
#    order, with their headers;
#  - relay_status: nothing in flight, outbox_backlog 0, per-topic backlog 0,
#    events and bytes relayed matching what Kafka holds, last_ack_at and
#    latency figures;
#  - after alter_topic() grows a relayed topic past the Kafka partition
#    count, keyed events go to Kafka's partition of the key, with no
#    delivery error;
#  - events published before relay_topic() are not sent, and after
#    stop_relay() nothing more of that topic is sent;
#  - the largest event publish() accepts reaches Kafka, and so does the
#    event after it.

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use RelayTest;

my $t0 = time();
my $db = 'postgres';
my $clients = 4;
my $transactions = 300;    # per client

# Local topic => [Kafka topic, local partitions, Kafka partitions].
my %topics = (
	orders => [ 'orders', 4, 4 ],
	payments => [ 'payments', 2, 2 ],
	audit => [ 'audit-k', 3, 5 ],    # Kafka has more partitions
);
my $outbox_topic = 'outbox-one';    # one partition: offsets are commit order

my $mock = RelayTest::MockKafka->start(
	(map { ('--topic', "$topics{$_}[0]:$topics{$_}[2]") } sort keys %topics),
	'--topic', "$outbox_topic:1", '--topic', 'big:1');
my $bootstrap = $mock->bootstrap;

# Without autovacuum only the test changes catalogs while the relay decodes
# (an ANALYZE of a segment table would also refresh the relay's lookups).
my $node = relay_node(
	'relay',
	bootstrap => $bootstrap,
	start => 1,
	conf => "autovacuum = off\n");
like(relay_status($node, $db)->{slot_name} // '', qr/\Apg_eventbus_relay_\d+\z/,
	'the relay runs with its slot');

$node->safe_psql(
	$db, join(
		'',
		(map { "SELECT eventbus.create_topic('$_', $topics{$_}[1]);\n" }
			sort keys %topics),
		q{
CREATE SEQUENCE txn_seq;
CREATE SEQUENCE rollback_seq;
CREATE TABLE outbox_sent (id uuid PRIMARY KEY, txn bigint NOT NULL);
}));

# Published before relay_topic(): never sent.
$node->safe_psql($db,
	q{SELECT eventbus.publish('orders', jsonb_build_object('kind', 'before', 'i', i), key => 'before-' || i) FROM generate_series(1, 20) i}
);

$node->safe_psql($db,
	join('', map { "SELECT eventbus.relay_topic('$_', '$topics{$_}[0]');\n" } sort keys %topics));
is( $node->safe_psql($db,
		"SELECT string_agg(topic || '>' || relay_to, ',' ORDER BY topic) FROM eventbus.topic"),
	'audit>audit-k,orders>orders,payments>payments',
	'relay_topic() recorded the Kafka topics');

# One outbox message whose savepoint rolls back and one that commits: only
# the second is sent, and once it is, nothing is left in the outbox backlog.
$node->safe_psql(
	$db, q{BEGIN;
	SAVEPOINT s;
	SELECT eventbus.outbox('outbox-one', '{"kind": "rolled-back"}');
	ROLLBACK TO SAVEPOINT s;
	SELECT eventbus.outbox('outbox-one', '{"kind": "first", "who": "first"}', headers => '{"who": "first"}');
	COMMIT});
wait_for_kafka($bootstrap, $outbox_topic, 1, 30);
poll_until(3, sub { relay_status($node, $db)->{outbox_backlog} == 0 });
is(relay_status($node, $db)->{outbox_backlog},
	0, 'outbox_backlog does not count a message whose savepoint rolled back');

# ---------------------------------------------------------------------------
# Publishing: pgbench, several scripts with weights.  Keys carry the client
# id, so each key is written by one session only and its positions follow
# that session's commit order.

my %scripts = (
	single => q{
\set k random(1, 8)
BEGIN;
SELECT nextval('txn_seq') AS txn \gset
SELECT eventbus.publish('orders',
    jsonb_build_object('kind', 'single', 'client', :client_id, 'txn', :txn),
    key => 'c' || :client_id || '-k' || :k,
    headers => jsonb_build_object('source', 'pgbench', 'txn', :txn::text));
COMMIT;
},
	batch => q{
BEGIN;
SELECT nextval('txn_seq') AS txn \gset
SELECT count(*) FROM eventbus.publish_batch('payments',
    ARRAY(SELECT jsonb_build_object('kind', 'batch', 'client', :client_id, 'txn', :txn, 'i', i)
          FROM generate_series(1, 10) i),
    ARRAY(SELECT 'c' || :client_id || '-p' || (i % 4) FROM generate_series(1, 10) i),
    ARRAY(SELECT jsonb_build_object('i', i::text, 'empty', NULL)
          FROM generate_series(1, 10) i));
COMMIT;
},
	savepoint => q{
\set k random(1, 8)
BEGIN;
SELECT nextval('txn_seq') AS txn \gset
SELECT eventbus.publish('audit',
    jsonb_build_object('kind', 'kept', 'client', :client_id, 'txn', :txn),
    key => 'c' || :client_id || '-a' || :k);
SAVEPOINT s;
SELECT eventbus.publish('audit', jsonb_build_object('kind', 'rolled-back', 'txn', :txn),
    key => 'c' || :client_id || '-a' || :k);
SELECT eventbus.publish('orders', jsonb_build_object('kind', 'rolled-back', 'txn', :txn));
SELECT eventbus.outbox('outbox-one', jsonb_build_object('kind', 'rolled-back', 'txn', :txn));
ROLLBACK TO SAVEPOINT s;
SELECT eventbus.publish('audit',
    jsonb_build_object('kind', 'after-savepoint', 'client', :client_id, 'txn', :txn),
    headers => jsonb_build_object('sp', 'yes'));
COMMIT;
},
	rollback => q{
BEGIN;
SELECT nextval('rollback_seq');
SELECT eventbus.publish('orders', '{"kind": "rolled-back"}', key => 'c' || :client_id || '-k1');
SELECT count(*) FROM eventbus.publish_batch('payments',
    ARRAY['{"kind": "rolled-back"}', '{"kind": "rolled-back"}']::jsonb[]);
SELECT eventbus.outbox('outbox-one', '{"kind": "rolled-back"}');
ROLLBACK;
},
	outbox => q{
\set k random(1, 8)
BEGIN;
SELECT nextval('txn_seq') AS txn \gset
INSERT INTO outbox_sent (id, txn)
SELECT eventbus.outbox('outbox-one',
           jsonb_build_object('kind', 'outbox', 'client', :client_id, 'txn', :txn),
           key => 'c' || :client_id,
           headers => jsonb_build_object('txn', :txn::text)),
       :txn;
SELECT eventbus.publish('orders',
    jsonb_build_object('kind', 'with-outbox', 'client', :client_id, 'txn', :txn),
    key => 'c' || :client_id || '-k' || :k);
COMMIT;
});
my %weights = (single => 3, batch => 2, savepoint => 2, rollback => 1, outbox => 2);

my $tmp = PostgreSQL::Test::Utils::tempdir;
my @files;
foreach my $name (sort keys %scripts)
{
	PostgreSQL::Test::Utils::append_to_file("$tmp/$name.sql", $scripts{$name});
	push @files, '-f', "$tmp/$name.sql\@$weights{$name}";
}
my ($pout, $perr) = ('', '');
my @cmd = (
	'pgbench', '-n', '-h', $node->host, '-p', $node->port,
	'-c', $clients, '-j', 2, '-t', $transactions, @files, $db);
note "running: @cmd";
my $pok = IPC::Run::run(\@cmd, '>', \$pout, '2>', \$perr,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
note "pgbench:\n$pout$perr";
ok($pok, 'pgbench ran every transaction') or diag($perr);
cmp_ok($node->safe_psql($db, 'SELECT last_value FROM rollback_seq'),
	'>', 0, 'some transactions rolled back entirely');

# Two sessions interleaved: A writes first, B commits first.
my $sa = $node->background_psql($db);
my $sb = $node->background_psql($db);
$sa->query_safe(
	q{BEGIN; SELECT eventbus.outbox('outbox-one', '{"kind": "interleaved", "who": "A"}', headers => '{"who": "A"}');
	  SELECT eventbus.publish('orders', '{"kind": "interleaved", "who": "A"}', key => 'session-a')});
$sb->query_safe(
	q{BEGIN; SELECT eventbus.outbox('outbox-one', '{"kind": "interleaved", "who": "B"}', headers => '{"who": "B"}');
	  SELECT eventbus.publish('orders', '{"kind": "interleaved", "who": "B"}', key => 'session-b');
	  COMMIT});
$sa->query_safe('COMMIT');
$sa->quit;
$sb->quit;

# ---------------------------------------------------------------------------
# What was committed, as stored.

# Local events of a topic (not the ones from before relay_topic()), with
# the Kafka partition they must land in (-1: any) and their timestamp in ms.
sub local_events
{
	my ($topic) = @_;
	my ($ktopic, $local, $kparts) = @{ $topics{$topic} };
	my $kpart =
	  $local == $kparts
	  ? 'partition'
	  : "CASE WHEN key IS NULL THEN -1 ELSE eventbus.partition_for_key(key, $kparts) END";
	my $json = $node->safe_psql(
		$db, qq{
		SELECT coalesce(json_agg(json_build_object(
		    'id', event_id, 'partition', partition, 'position', position,
		    'key', key, 'value', value::text, 'headers', headers,
		    'kpart', $kpart,
		    'ts', floor(extract(epoch FROM created_at) * 1000)::bigint)), '[]')
		FROM eventbus_data.$topic WHERE value->>'kind' <> 'before'});
	return decode_json($json);
}

my %local = map { $_ => local_events($_) } keys %topics;
my $outbox_sent = decode_json(
	$node->safe_psql(
		$db, 'SELECT coalesce(json_agg(json_build_object(\'id\', id, \'txn\', txn)), \'[]\') FROM outbox_sent'
	));
my $total_events = 0;
$total_events += @{ $local{$_} } foreach keys %local;
note "committed: $total_events events, "
  . scalar(@$outbox_sent)
  . " outbox messages from pgbench";
cmp_ok($total_events, '>=', 2500, 'thousands of events were committed');
my $savepoint_txns = grep { $_->{value} =~ /after-savepoint/ } @{ $local{audit} };
note "$savepoint_txns committed transactions rolled back a savepoint with an outbox message";
is( $node->safe_psql($db,
		"SELECT count(*) FROM eventbus_data.orders WHERE value->>'kind' = 'rolled-back'"),
	'0',
	'rolled-back events are not stored');

# ---------------------------------------------------------------------------
# Wait until Kafka has everything and nothing is in flight.

my %kafka;
foreach my $topic (sort keys %topics)
{
	$kafka{$topic} = wait_for_kafka($bootstrap, $topics{$topic}[0],
		scalar @{ $local{$topic} }, 60);
}
$kafka{outbox} = wait_for_kafka($bootstrap, $outbox_topic, @$outbox_sent + 3, 60);
ok(poll_until(30, sub { relay_status($node, $db)->{messages_in_flight} == 0 }),
	'relay_status: nothing in flight once everything arrived');
# Read again: anything sent twice would show now.
$kafka{$_} = kafka_read($bootstrap, $topics{$_}[0]) foreach keys %topics;
$kafka{outbox} = kafka_read($bootstrap, $outbox_topic);

# ---------------------------------------------------------------------------
# Events: each committed event exactly once, as published.

my @all_msgs = map { @{ $kafka{$_} // [] } } sort keys %kafka;
is(scalar(grep { $_->{value} =~ /"rolled-back"/ } @all_msgs),
	0, 'nothing of a rolled-back transaction or savepoint reached Kafka');
is( $node->safe_psql($db,
		"SELECT count(*) FROM eventbus_data.orders WHERE value->>'kind' = 'before'"),
	'20',
	'20 events were published before relay_topic()');
is(scalar(grep { $_->{value} =~ /"before"/ } @all_msgs),
	0, 'none of them reached Kafka');

# Reports a list of problems as one test (the first few as diagnostics).
sub no_problems
{
	my ($problems, $name) = @_;
	my $ok = is(scalar(@$problems), 0, $name);
	diag(join("\n", @$problems[ 0 .. ($#$problems < 9 ? $#$problems : 9) ]))
	  unless $ok;
	return $ok;
}

my $kafka_messages = 0;
my $kafka_bytes = 0;
foreach my $topic (sort keys %topics)
{
	my ($ktopic, $nlocal, $nkafka) = @{ $topics{$topic} };
	my $msgs = $kafka{$topic} // [];
	my %want = map { $_->{id} => $_ } @{ $local{$topic} };
	my $by_id = by_event_id($msgs);
	my (@missing, @dups, @unknown, @wrong);

	$kafka_messages += @$msgs;
	foreach my $m (@$msgs)
	{
		$kafka_bytes += length($m->{value}) + length($m->{key} // '');
	}
	foreach my $id (sort keys %want)
	{
		push @missing, $id unless $by_id->{$id};
	}
	foreach my $id (sort keys %$by_id)
	{
		my $copies = $by_id->{$id};
		my $e = $want{$id};
		if (!$e)
		{
			push @unknown,
			  "$ktopic [$copies->[0]{partition}] at $copies->[0]{offset}: id \"$id\", value $copies->[0]{value}";
			next;
		}
		push @dups, "$id (" . scalar(@$copies) . " copies)" if @$copies > 1;
		foreach my $m (@$copies)
		{
			my @p;
			my %h = %{ $m->{headers} };
			my $user = $e->{headers} // {};
			my @want_headers = sort(
				(map { "$_=" . ($user->{$_} // 'NULL') } keys %$user),
				"eventbus-event-id=$id",
				"eventbus-topic=$topic",
				"eventbus-partition=$e->{partition}",
				"eventbus-position=$e->{position}",
				'eventbus-lsn=' . ($h{'eventbus-lsn'} // ''));
			my @got_headers = sort map { "$_->[0]=" . ($_->[1] // '') } @{ $m->{header_list} };
			push @p, 'headers ' . join(',', @got_headers) . ' instead of ' . join(',', @want_headers)
			  unless "@got_headers" eq "@want_headers";
			push @p, "eventbus-lsn \"" . ($h{'eventbus-lsn'} // '') . '" is not an LSN'
			  unless ($h{'eventbus-lsn'} // '') =~ m{\A[0-9A-F]{1,8}/[0-9A-F]{1,8}\z};
			push @p, 'key ' . ($m->{key} // 'none') . ' instead of ' . ($e->{key} // 'none')
			  unless ($m->{key} // "\0") eq ($e->{key} // "\0");
			push @p, "value $m->{value} instead of $e->{value}"
			  unless $m->{value} eq $e->{value};
			push @p, "timestamp $m->{timestamp} instead of $e->{ts}"
			  unless $m->{timestamp} == $e->{ts};
			push @p, "Kafka partition $m->{partition} instead of $e->{kpart}"
			  unless $e->{kpart} == -1 ? $m->{partition} < $nkafka
			  : $m->{partition} == $e->{kpart};
			push @wrong, "$ktopic [$m->{partition}] at $m->{offset} ($id): " . join('; ', @p)
			  if @p;
		}
	}
	is(scalar(@$msgs), scalar(@{ $local{$topic} }),
		"$ktopic: as many messages as committed events ($nlocal local, $nkafka Kafka partitions)");
	no_problems(\@missing, "$ktopic: no committed event is missing");
	no_problems(\@dups, "$ktopic: no event arrived twice");
	no_problems(\@unknown,
		"$ktopic: nothing else arrived (no rolled-back event, none from before relay_topic)");
	no_problems(\@wrong,
		"$ktopic: key, value, timestamp, partition and headers as published");

	# Order: per key, positions grow with the offset; per Kafka partition,
	# commit LSNs never decrease; one LSN per transaction.
	my (%last_pos, %last_lsn, %txn_lsn, @order, @lsn_order, @txn);
	foreach my $m (@$msgs)
	{
		my $pos = $m->{headers}{'eventbus-position'} // -1;
		my $lsn = $m->{headers}{'eventbus-lsn'} // '0/0';
		if (defined $m->{key})
		{
			my $k = "$m->{partition}/$m->{key}";
			push @order, "key $m->{key}: position $pos after $last_pos{$k}"
			  if defined $last_pos{$k} && $pos <= $last_pos{$k};
			$last_pos{$k} = $pos;
		}
		push @lsn_order,
		  "$ktopic [$m->{partition}] at $m->{offset}: LSN $lsn after $last_lsn{$m->{partition}}"
		  if defined $last_lsn{ $m->{partition} }
		  && lsn_cmp($lsn, $last_lsn{ $m->{partition} }) < 0;
		$last_lsn{ $m->{partition} } = $lsn;
		my $v = eval { decode_json($m->{value}) } // {};
		if (defined $v->{txn})
		{
			push @txn, "txn $v->{txn}: LSN $lsn and $txn_lsn{$v->{txn}}"
			  if defined $txn_lsn{ $v->{txn} } && $txn_lsn{ $v->{txn} } ne $lsn;
			$txn_lsn{ $v->{txn} } = $lsn;
		}
	}
	no_problems(\@order, "$ktopic: per key, positions increase with the offset");
	no_problems(\@lsn_order,
		"$ktopic: per Kafka partition, messages are in commit (LSN) order");
	no_problems(\@txn, "$ktopic: the events of a transaction share one eventbus-lsn");
}

# ---------------------------------------------------------------------------
# Outbox: the committed messages, once each, in commit order.

{
	my $msgs = $kafka{outbox} // [];
	my %sent = map { $_->{id} => $_->{txn} } @$outbox_sent;
	my $by_id = by_event_id($msgs);
	my (@missing, @wrong, @order, @dups);
	my @who;
	my $last_lsn;

	$kafka_messages += @$msgs;
	foreach my $m (@$msgs)
	{
		$kafka_bytes += length($m->{value}) + length($m->{key} // '');
		my $id = $m->{headers}{'eventbus-event-id'} // '';
		my $lsn = $m->{headers}{'eventbus-lsn'} // '';
		my $v = eval { decode_json($m->{value}) } // {};
		my @p;
		my @got_headers = sort map { $_->[0] } @{ $m->{header_list} };
		if (($v->{kind} // '') =~ /\A(interleaved|first)\z/)
		{
			push @who, $v->{who};
			push @p, 'headers ' . join(',', @got_headers)
			  unless "@got_headers" eq 'eventbus-event-id eventbus-lsn who'
			  && $m->{headers}{who} eq $v->{who};
		}
		elsif (!exists $sent{$id})
		{
			push @p, "not a committed outbox message: $m->{value}";
		}
		else
		{
			push @p, "value $m->{value}" unless $v->{txn} == $sent{$id};
			push @p, 'key ' . ($m->{key} // 'none')
			  unless ($m->{key} // '') eq "c$v->{client}";
			push @p, 'headers ' . join(',', @got_headers)
			  unless "@got_headers" eq 'eventbus-event-id eventbus-lsn txn'
			  && $m->{headers}{txn} eq $v->{txn};
		}
		push @p, "eventbus-lsn \"$lsn\" is not an LSN"
		  unless $lsn =~ m{\A[0-9A-F]{1,8}/[0-9A-F]{1,8}\z};
		push @order, "offset $m->{offset}: LSN $lsn after $last_lsn"
		  if defined $last_lsn && $lsn =~ m{/} && lsn_cmp($lsn, $last_lsn) < 0;
		$last_lsn = $lsn if $lsn =~ m{/};
		push @wrong, "offset $m->{offset} ($id): " . join('; ', @p) if @p;
	}
	foreach my $id (sort keys %sent)
	{
		push @missing, $id unless $by_id->{$id};
	}
	push @dups, $_ foreach grep { @{ $by_id->{$_} } > 1 } sort keys %$by_id;

	is(scalar(@$msgs), @$outbox_sent + 3,
		'outbox: as many messages as committed (pgbench, the two sessions and the first)');
	no_problems(\@missing, 'outbox: every committed message arrived');
	no_problems(\@dups, 'outbox: no message arrived twice');
	no_problems(\@wrong,
		'outbox: only committed messages, with key, value and headers (own, eventbus-event-id, eventbus-lsn)');
	no_problems(\@order, 'outbox: messages are in commit (LSN) order');
	is(join(',', @who), 'first,B,A',
		'outbox: session B committed first and arrived first although A wrote first');
}

# ---------------------------------------------------------------------------
# relay_status once everything arrived.

my $status;
poll_until(
	3,
	sub {
		$status = relay_status($node, $db);
		return $status->{events_relayed} >= $kafka_messages
		  && $status->{outbox_backlog} == 0;
	});
note 'relay_status: ' . encode_json($status);
is($status->{state}, 'running', 'relay_status: state running');
is($status->{messages_in_flight}, 0, 'relay_status: no message in flight');
is($status->{outbox_backlog}, 0, 'relay_status: outbox_backlog 0');
is_deeply($status->{backlog}, { audit => 0, orders => 0, payments => 0 },
	'relay_status: backlog 0 for every relayed topic');
is($status->{events_relayed}, $kafka_messages,
	'relay_status: events_relayed counts every message in Kafka');
is($status->{bytes_relayed}, $kafka_bytes,
	'relay_status: bytes_relayed is the sum of keys and values sent');
is($status->{last_error}, undef, 'relay_status: no error');
ok( $node->safe_psql(
		$db,
		"SELECT last_ack_at > now() - interval '1 minute' AND last_ack_at >= started_at FROM eventbus.relay_status"
	) eq 't',
	'relay_status: last_ack_at is recent');
ok( defined $status->{latency_p50_ms}
	  && defined $status->{latency_p99_ms}
	  && $status->{latency_p50_ms} >= 0
	  && $status->{latency_p50_ms} <= $status->{latency_p99_ms}
	  && $status->{latency_p99_ms} < 60_000,
	'relay_status: latency p50 <= p99, both plausible');
is( $node->safe_psql(
		$db,
		'SELECT s.confirmed_lsn = r.confirmed_flush_lsn FROM eventbus.relay_status s, pg_replication_slots r WHERE r.slot_name = s.slot_name'
	),
	't',
	'relay_status: confirmed_lsn is the slot\'s');

# ---------------------------------------------------------------------------
# alter_topic() grows a relayed topic: orders now has 8 partitions here and
# still 4 in Kafka, so from then on its keyed events go to Kafka's own
# partition of the key, without delivery errors.

my $error_before = $status->{last_error_at};
$node->safe_psql($db, "SELECT eventbus.alter_topic('orders', partitions => 8)");
$node->safe_psql($db,
	q{SELECT eventbus.publish('orders', jsonb_build_object('kind', 'grown', 'i', i), key => 'grown-' || i) FROM generate_series(1, 40) i}
);
my $grown = decode_json(
	$node->safe_psql(
		$db, q{
	SELECT json_agg(json_build_object('id', event_id, 'key', key, 'partition', partition,
	                                  'kpart', eventbus.partition_for_key(key, 4)))
	FROM eventbus_data.orders WHERE value->>'kind' = 'grown'}));
cmp_ok(scalar(grep { $_->{partition} >= 4 } @$grown),
	'>', 0, 'after alter_topic(), some keyed events are in the new partitions 4-7');
my %grown = map { $_->{id} => $_ } @$grown;
my $grown_msgs = [];
poll_until(
	30,
	sub {
		my $m = kafka_read($bootstrap, 'orders') // [];
		$grown_msgs = [ grep { $grown{ $_->{headers}{'eventbus-event-id'} // '' } } @$m ];
		return scalar(@$grown_msgs) >= scalar(@$grown);
	},
	250);
poll_until(10, sub { relay_status($node, $db)->{messages_in_flight} == 0 });
$grown_msgs = [ grep { $grown{ $_->{headers}{'eventbus-event-id'} // '' } }
	  @{ kafka_read($bootstrap, 'orders') // [] } ];
is(scalar(@$grown_msgs), scalar(@$grown),
	'after alter_topic(), each new event arrives once');
my @misplaced = map { "$_->{key} in $_->{partition}" }
  grep { $_->{partition} != $grown{ $_->{headers}{'eventbus-event-id'} }{kpart} }
  @$grown_msgs;
is(scalar(@misplaced), 0,
	'after alter_topic(), keyed events go to the murmur2 partition among the 4 in Kafka')
  or diag("@misplaced");
$status = relay_status($node, $db);
is($status->{last_error_at}, $error_before,
	'after alter_topic(), no error in relay_status ("' . ($status->{last_error} // '') . '")');

# ---------------------------------------------------------------------------
# stop_relay(): nothing more of the topic is sent; other topics go on.

$node->safe_psql($db, "SELECT eventbus.stop_relay('payments')");
$node->safe_psql($db,
	q{SELECT count(*) FROM eventbus.publish_batch('payments', ARRAY(SELECT jsonb_build_object('kind', 'after-stop', 'i', i) FROM generate_series(1, 5) i))}
);
# A marker committed afterwards: once it arrived and nothing is in flight,
# everything committed before it has been decoded and sent.
my $marker = $node->safe_psql($db,
	q{SELECT eventbus.publish('orders', '{"kind": "marker"}', key => 'marker'); SELECT event_id FROM eventbus_data.orders WHERE key = 'marker'}
);
$marker = (split /\n/, $marker)[-1];
ok( poll_until(
		30,
		sub {
			my $m = kafka_read($bootstrap, 'orders') // [];
			return grep { ($_->{headers}{'eventbus-event-id'} // '') eq $marker } @$m;
		},
		250),
	'after stop_relay(), events of other topics are still relayed');
poll_until(10,
	sub { relay_status($node, $db)->{messages_in_flight} == 0 });
my $after = kafka_read($bootstrap, 'payments') // [];
is(scalar(grep { $_->{value} =~ /after-stop/ } @$after),
	0, 'after stop_relay(), the topic\'s new events are not sent');
is(scalar(@$after), scalar(@{ $local{payments} }),
	'after stop_relay(), the Kafka topic holds just what was relayed before');
is_deeply([ map { $_->[0] } @{ decode_json($node->safe_psql($db, q{SELECT coalesce(json_agg(json_build_array(topic) ORDER BY topic), '[]') FROM eventbus.relay_backlog()})) } ],
	[ 'audit', 'orders' ], 'relay_backlog() lists only the topics still relayed');

# ---------------------------------------------------------------------------
# The largest events publish() accepts (eventbus.max_event_size, 976 kB
# by default, as sent) reach Kafka as well, and do not hold up the events after them.

$node->safe_psql($db,
	q{SELECT eventbus.create_topic('big', 1); SELECT eventbus.relay_topic('big')});
$node->safe_psql($db,
	q{SELECT eventbus.publish('big', jsonb_build_object('big', repeat('x', 990000)), key => 'big')});
$node->safe_psql($db,
	q{SELECT eventbus.publish('big', '{"small": true}', key => 'small')});
my $big = wait_for_kafka($bootstrap, 'big', 2, 10);
is(join(',', map { $_->{key} // 'none' } @$big),
	'big,small', 'an event of about 1 MB and the event after it reach Kafka')
  or diag('relay_status: ' . encode_json(relay_status($node, $db)));

# ---------------------------------------------------------------------------

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC|exited with exit code/),
	'no crash or worker exit in the server log');
$node->stop;
$mock->stop;
note sprintf('080_relay took %.1f s', time() - $t0);
done_testing();
