#
# RelayTest.pm
#	Helpers shared by the Kafka relay TAP tests (test/t/08*_relay*.pl):
#
#	  RelayTest::MockKafka->start(ARGS)	the mock Kafka helper (test/mock_kafka.c),
#										its bootstrap servers, commands on stdin
#	  relay_node(NAME, ...)				a server configured for the relay
#	  wait_relay_running(NODE, DB)		until the relay runs and has its slot
#	  relay_status(NODE, DB)			eventbus.relay_status as a hash
#	  kafka_read(BOOTSTRAP, TOPIC)		every message of a Kafka topic (kcat)
#	  wait_for_kafka(...)				until a topic holds enough messages
#	  poll_until(SECONDS, CODE)			until CODE returns true
#	  slot_confirmed_lsn, lsn_cmp		the relay slot's confirmed LSN, LSN order
#	  by_event_id(MESSAGES)				messages grouped by eventbus-event-id
#	  log_since(NODE, OFFSET)			the server log from a byte offset on
#	  kafka_values(BOOTSTRAP, TOPIC, ISOLATION)	the values of a topic, as a
#										consumer of that isolation.level reads them
#	  committed_view(BOOTSTRAP, MESSAGES)	what a read_committed consumer of a
#										real broker would see of relayed messages
#
# $ENV{EB_MOCK_KAFKA} is the helper's path (scripts/test.sh sets it); kcat
# must be in PATH.  Every wait is bounded.
#
package RelayTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run qw(run timeout);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(compare_delivery relay_node wait_relay_running relay_status kafka_read
  wait_for_kafka poll_until slot_confirmed_lsn lsn_cmp by_event_id
  log_since kafka_values committed_view committed_workload
  committed_events relay_stop relay_start backfill_done kafka_missing_repeated);

my $kcat_timeout = 30;    # seconds for one kcat run

# Calls $code every $interval_ms until it returns a true value, for at most
# $seconds.  Returns that value, or undef when time ran out.
sub poll_until
{
	my ($seconds, $code, $interval_ms) = @_;
	my $deadline = time() + $seconds;
	$interval_ms //= 100;
	while (1)
	{
		my $r = $code->();
		return $r if $r;
		return undef if time() > $deadline;
		usleep($interval_ms * 1000);
	}
}

# A new node with the library preloaded and wal_level = logical; conf: more
# postgresql.conf lines; database => the relay's database (default
# postgres).  Not started unless start => 1: then the extension is created
# in that database first, eventbus.kafka_brokers is set to bootstrap => and
# the configuration reloaded, and the relay is waited for.  Without start,
# bootstrap => goes straight into postgresql.conf.
sub relay_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $db = $opts{database} // 'postgres';
	$node->init;
	my $conf = qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
max_replication_slots = 4
};
	$conf .= "eventbus.database = '$db'\n" if defined $opts{database};
	# EB_RELAY_DELIVERY_DEFAULT: run relay tests under another delivery mode
	# (a test's own conf, after it, still decides)
	$conf .= "eventbus.relay_delivery = '$ENV{EB_RELAY_DELIVERY_DEFAULT}'\n"
	  if $ENV{EB_RELAY_DELIVERY_DEFAULT};
	$conf .= $opts{conf} if defined $opts{conf};
	$conf .= "eventbus.kafka_brokers = '$opts{bootstrap}'\n"
	  if defined $opts{bootstrap} && !$opts{start};
	$node->append_conf('postgresql.conf', $conf);
	if ($opts{start})
	{
		$node->start;
		$node->safe_psql('postgres', "CREATE DATABASE $db")
		  if $db ne 'postgres';
		$node->safe_psql($db, 'CREATE EXTENSION pg_eventbus');
		if (defined $opts{bootstrap})
		{
			$node->append_conf('postgresql.conf',
				"eventbus.kafka_brokers = '$opts{bootstrap}'\n");
			$node->reload;
			wait_relay_running($node, $db)
			  or die "the relay did not start on node $name";
		}
	}
	return $node;
}

# The workload of the exactly-once tests: topic ev (3 partitions, relayed),
# a table "committed" and a pgbench script whose transactions publish two
# single events or a batch of five with one key, each event id going into
# "committed" in the same transaction.  Returns the script's path.
sub committed_workload
{
	my ($node, $db) = @_;
	$node->safe_psql(
		$db, q{
SELECT eventbus.create_topic('ev', 3);
SELECT eventbus.relay_topic('ev');
CREATE TABLE committed (event_id uuid PRIMARY KEY);
CREATE SEQUENCE batch_seq;
});
	my $script = q{
\set k random(1, 20)
\set kind random(1, 2)
BEGIN;
\if :kind = 1
SELECT (r).partition AS p, (r).position AS pos
FROM (SELECT eventbus.publish('ev', jsonb_build_object('c', :client_id, 'k', :k),
                              key => 'c' || :client_id || '-' || :k) AS r) s \gset
INSERT INTO committed SELECT event_id FROM eventbus_data.ev WHERE partition = :p AND position = :pos;
SELECT (r).partition AS p, (r).position AS pos
FROM (SELECT eventbus.publish('ev', jsonb_build_object('c', :client_id, 'k', :k, 'second', true)) AS r) s \gset
INSERT INTO committed SELECT event_id FROM eventbus_data.ev WHERE partition = :p AND position = :pos;
\else
SELECT nextval('batch_seq') AS b \gset
SELECT min(partition) AS p, min(position) AS lo, max(position) AS hi
FROM eventbus.publish_batch('ev',
    ARRAY(SELECT jsonb_build_object('c', :client_id, 'b', :b, 'i', i) FROM generate_series(1, 5) i),
    array_fill('c' || :client_id || '-' || :k, ARRAY[5])) \gset
INSERT INTO committed
SELECT event_id FROM eventbus_data.ev
WHERE partition = :p AND position BETWEEN :lo AND :hi AND value @> jsonb_build_object('b', :b);
\endif
COMMIT;
};
	my $tmp = PostgreSQL::Test::Utils::tempdir;
	PostgreSQL::Test::Utils::append_to_file("$tmp/publish.sql", $script);
	return "$tmp/publish.sql";
}

# After committed_workload: checks that the stored events of ev are exactly
# those recorded in "committed", and returns them by event id (partition,
# position, value as text).
sub committed_events
{
	my ($node, $db) = @_;
	Test::More::is(
		$node->safe_psql(
			$db,
			'SELECT count(*) FROM eventbus_data.ev e FULL JOIN committed c USING (event_id) WHERE e.event_id IS NULL OR c.event_id IS NULL'
		),
		'0',
		'the stored events are exactly the recorded committed ones');
	my $committed = JSON::PP::decode_json(
		$node->safe_psql(
			$db, q{
	SELECT json_agg(json_build_object('id', event_id, 'partition', partition,
	    'position', position, 'value', value::text))
	FROM eventbus_data.ev}));
	return { map { $_->{id} => $_ } @$committed };
}

# eventbus.relay_status as a hash (JSON nulls are undef).
sub relay_status
{
	my ($node, $db) = @_;
	my $json = $node->safe_psql($db // 'postgres',
		'SELECT row_to_json(s) FROM eventbus.relay_status s');
	return decode_json($json);
}

# Waits until the relay runs with its slot in place; true on success.
sub wait_relay_running
{
	my ($node, $db, $seconds) = @_;
	my $ok = poll_until(
		$seconds // 30,
		sub {
			$node->safe_psql($db // 'postgres',
				"SELECT state = 'running' AND confirmed_lsn IS NOT NULL FROM eventbus.relay_status"
			) eq 't';
		});
	diag('relay status: ' . encode_json(relay_status($node, $db)))
	  unless $ok;
	return $ok;
}

# The relay slot's confirmed_flush_lsn from pg_replication_slots.
sub slot_confirmed_lsn
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name LIKE 'pg_eventbus_relay_%'"
	);
}

# Stops the relay by clearing eventbus.kafka_brokers; true once no relay
# slot is in use (within 30 s).
sub relay_stop
{
	my ($node, $db) = @_;
	$node->safe_psql($db, q{ALTER SYSTEM SET eventbus.kafka_brokers = ''});
	$node->reload;
	return poll_until(
		30,
		sub {
			$node->safe_psql($db,
				q{SELECT count(*) FROM pg_replication_slots WHERE active_pid IS NOT NULL}) eq '0';
		});
}

# Starts the relay again with the brokers at $bootstrap; true once it runs
# with its slot (within 60 s).
sub relay_start
{
	my ($node, $db, $bootstrap) = @_;
	$node->safe_psql($db, qq{ALTER SYSTEM SET eventbus.kafka_brokers = '$bootstrap'});
	$node->reload;
	return wait_relay_running($node, $db, 60);
}

# True once the backfill of $topic is done (within $seconds).
sub backfill_done
{
	my ($node, $db, $topic, $seconds) = @_;
	return poll_until(
		$seconds,
		sub {
			$node->safe_psql($db,
				qq{SELECT state FROM eventbus.relay_backfill WHERE topic = '$topic'}) eq 'done';
		});
}

# What a read_committed reader of Kafka topic $topic (of the local topic of
# the same name) misses and sees more than once: lists of event ids.
sub kafka_missing_repeated
{
	my ($node, $db, $bootstrap, $topic) = @_;
	my %want = map { $_ => 1 } split /\n/,
	  $node->safe_psql($db, qq{SELECT event_id FROM eventbus_data.$topic});
	wait_for_kafka($bootstrap, $topic, scalar(keys %want), 30);
	usleep(500_000);
	my $by = by_event_id(committed_view($bootstrap, kafka_read($bootstrap, $topic)));
	return ([ grep { !$by->{$_} } keys %want ], [ grep { @{ $by->{$_} } > 1 } keys %$by ]);
}

# Compares two LSNs written X/Y (as <=> does).
sub lsn_cmp
{
	my ($a, $b) = @_;
	my ($ah, $al) = map { hex } split m{/}, $a;
	my ($bh, $bl) = map { hex } split m{/}, $b;
	return $ah <=> $bh || $al <=> $bl;
}

# Every message of a Kafka topic, from the beginning to the current end, as
# a list of hashes: partition, offset, key (undef: none), timestamp (ms),
# value, headers (name => value) and header_list ([name, value] pairs in
# order; kcat prints a header without value as NULL).  Sorted by partition
# and offset.  Returns undef if kcat fails (for instance while every broker
# is down).
sub kafka_read
{
	my ($bootstrap, $topic) = @_;
	my ($out, $err) = ('', '');
	# fields separated by \x1f, messages ended by \x1e: values are JSON text
	my $fmt = '%p\x1f%o\x1f%K\x1f%k\x1f%T\x1f%h\x1f%S\x1f%s\x1e';
	my $ok = eval {
		run([
				'kcat', '-C', '-b', $bootstrap, '-t', $topic,
				'-o', 'beginning', '-e', '-q', '-f', $fmt
			],
			'<', \undef, '>', \$out, '2>', \$err,
			timeout($kcat_timeout));
	};
	if (!$ok)
	{
		note "kcat -C -t $topic failed ($?): $err " . ($@ // '');
		return undef;
	}
	my @msgs;
	foreach my $rec (split /\x1e/, $out)
	{
		my ($p, $o, $klen, $k, $ts, $h, $vlen, $v) = split /\x1f/, $rec, 8;
		die "unparsable kcat output \"$rec\"" unless defined $v;
		die "value of $topic [$p] at $o is cut: \"$v\""
		  unless length($v) == $vlen;
		my (%headers, @list);
		foreach my $pair (split /,/, $h)
		{
			my ($name, $value) = split /=/, $pair, 2;
			push @list, [ $name, $value ];
			$headers{$name} = $value;
		}
		push @msgs,
		  {
			topic => $topic,
			partition => $p,
			offset => $o,
			key => $klen == -1 ? undef : $k,
			timestamp => $ts,
			headers => \%headers,
			header_list => \@list,
			value => $v,
		  };
	}
	return [ sort { $a->{partition} <=> $b->{partition}
			  || $a->{offset} <=> $b->{offset} } @msgs ];
}

# Waits until a topic holds at least $count messages; returns them (all of
# them, also when time ran out).
sub wait_for_kafka
{
	my ($bootstrap, $topic, $count, $seconds) = @_;
	my $msgs;
	poll_until(
		$seconds // 30,
		sub {
			$msgs = kafka_read($bootstrap, $topic);
			return $msgs && @$msgs >= $count;
		},
		250);
	$msgs //= [];
	note scalar(@$msgs) . " messages in Kafka topic $topic, waited for $count";
	return $msgs;
}

# Messages grouped by their eventbus-event-id header: id => [messages].
sub by_event_id
{
	my ($msgs) = @_;
	my %by;
	push @{ $by{ $_->{headers}{'eventbus-event-id'} // '' } }, $_
	  foreach @$msgs;
	return \%by;
}

# Compares Kafka's messages with the committed events (event id => {value,
# partition, position}).  Returns lists of ids missing from Kafka, messages
# that are no committed event, copies that differ from the event or from
# the first copy's LSN, and the number of re-sent copies.
sub compare_delivery
{
	my ($want, $msgs) = @_;
	my $by_id = by_event_id($msgs);
	my (@missing, @unknown, @differ);
	my $resent = 0;
	foreach my $id (sort keys %$want)
	{
		push @missing, $id unless $by_id->{$id};
	}
	foreach my $id (sort keys %$by_id)
	{
		my $copies = $by_id->{$id};
		my $e = $want->{$id};
		if (!$e)
		{
			push @unknown, "id \"$id\": $copies->[0]{value}";
			next;
		}
		$resent += @$copies - 1;
		foreach my $m (@$copies)
		{
			my $h = $m->{headers};
			push @differ, "$id at $m->{partition}/$m->{offset}"
			  unless $m->{value} eq $e->{value}
			  && $m->{partition} == $e->{partition}
			  && ($h->{'eventbus-partition'} // '') eq $e->{partition}
			  && ($h->{'eventbus-position'} // '') eq $e->{position}
			  && ($h->{'eventbus-lsn'} // '') eq ($copies->[0]{headers}{'eventbus-lsn'} // '-');
		}
	}
	return (\@missing, \@unknown, \@differ, $resent);
}

# The server log from byte $offset on.
sub log_since
{
	my ($node, $offset) = @_;
	return substr(slurp_file($node->logfile), $offset // 0);
}

# The values of every message of a topic (one line each, so values must not
# hold newlines), read by kcat with isolation.level $isolation.
sub kafka_values
{
	my ($bootstrap, $topic, $isolation) = @_;
	my ($out, $err) = ('', '');
	run([
			'kcat', '-C', '-b', $bootstrap, '-t', $topic,
			'-X', "isolation.level=$isolation",
			'-o', 'beginning', '-e', '-q', '-f', '%s\n'
		],
		'<', \undef, '>', \$out, '2>', \$err,
		timeout($kcat_timeout))
	  or die "kcat -C -t $topic failed: $err";
	return [ split /\n/, $out ];
}

# Exactly-once mode on the mock cluster.  The mock does not hide aborted
# transactions from read_committed consumers (its fetch responses list none
# and its last stable offset is the high watermark; 130_mock_transactions.pl
# shows it), so this computes what a read_committed consumer of a real
# broker sees of the relayed messages $msgs (from kafka_read): those whose
# offset lies in a range that a progress record of the relay names (each
# Kafka transaction's record lists, per topic and partition, the first and
# last offset its messages got).  The relay sends a transaction's progress
# record last, once all its messages are acknowledged, and commits right
# after: a transaction whose record never arrived never committed.  (One
# whose record arrived but whose commit did not counts as committed here;
# the relay, reading its progress back from the same mock, treats it the
# same way.)  With no progress topic, nothing was sent in transactions:
# every message counts.
sub committed_view
{
	my ($bootstrap, $msgs, $progress_topic) = @_;
	my $progress =
	  kafka_read($bootstrap, $progress_topic // '__eventbus_relay_progress')
	  // die "could not read the progress topic";
	return $msgs unless @$progress;
	my %ranges;    # "topic/partition" => [[first, last], ...]
	foreach my $p (@$progress)
	{
		my $v = decode_json($p->{value});
		push @{ $ranges{"$_->[0]/$_->[1]"} }, [ $_->[2], $_->[3] ]
		  foreach @{ $v->{offsets} };
	}
	return [
		grep {
			my $m = $_;
			grep { $m->{offset} >= $_->[0] && $m->{offset} <= $_->[1] }
			  @{ $ranges{"$m->{topic}/$m->{partition}"} // [] }
		} @$msgs
	];
}

#
# The mock Kafka cluster, driven over its stdin.
#
package RelayTest::MockKafka;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $answer_timeout = 10;    # seconds for the helper to start or answer

# Starts the helper with the given arguments (--brokers N, --topic NAME:N)
# and waits for its bootstrap line; dies if it does not come.
sub start
{
	my ($class, @args) = @_;
	my $path = $ENV{EB_MOCK_KAFKA}
	  or die "EB_MOCK_KAFKA must name the mock_kafka helper (see scripts/test.sh)";
	my $self = bless { in => '', out => '', err => '' }, $class;
	$self->{timer} = IPC::Run::timer($answer_timeout);
	$self->{h} = IPC::Run::start([ $path, @args ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err},
		$self->{timer});
	pump_until($self->{h}, $self->{timer}, \$self->{out}, qr/\n/);
	($self->{bootstrap}) = $self->{out} =~ /\ABOOTSTRAP=(\S+)\n\z/
	  or die "mock_kafka did not start: \"$self->{out}\" \"$self->{err}\"";
	note "mock Kafka cluster at $self->{bootstrap}";
	return $self;
}

sub bootstrap { return $_[0]->{bootstrap}; }

# Sends a command ("down 1", "up 1", "create t 3", "produce_errors 1
# MSG_SIZE_TOO_LARGE", "topic_error t TOPIC_AUTHORIZATION_FAILED"; see
# test/mock_kafka.c) and returns the answer
# ("ok" or "error ...").
sub command
{
	my ($self, $cmd) = @_;
	$self->{out} = '';
	$self->{in} .= "$cmd\n";
	$self->{timer}->start($answer_timeout);
	pump_until($self->{h}, $self->{timer}, \$self->{out}, qr/\n/);
	my $answer =
	  $self->{out} =~ /\A(.*)\n\z/ ? $1 : "no answer: \"$self->{out}\"";
	note "mock_kafka: $cmd -> $answer";
	return $answer;
}

# Ends the helper.
sub stop
{
	my ($self) = @_;
	return unless $self->{h};
	$self->command('quit');
	$self->{timer}->start($answer_timeout);
	eval { $self->{h}->finish; 1 } or $self->{h}->kill_kill;
	note "mock_kafka stderr: $self->{err}" if $self->{err} ne '';
	delete $self->{h};
}

1;
