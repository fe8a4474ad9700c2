# The Kafka relay: retained WAL of an idle database, and bad settings.
#
#  - An idle relay database does not hold WAL: while another database
#    writes, the relay slot's confirmed position keeps up with the WAL, and
#    once things are quiet wal_retained_bytes is small.
#  - Unreachable brokers (a closed port): relay_status shows an error naming
#    them, the worker stays up (same pid), no crash loop in the log.
#  - Eight unreachable brokers: one rate-limited report for all of them
#    (not one log line per broker and per "N/M brokers are down"), state
#    'broker unreachable', last_error names a broker and the cause.
#  - An unknown property in eventbus.kafka_properties: state 'configuration
#    error', last_error names the property, the worker waits (same pid, one
#    WARNING); fixing it and reloading makes it relay again.
#  - A secret in eventbus.kafka_properties_file with an invalid SASL
#    mechanism: an error is shown, the secret never appears in the server
#    log or relay_status.
#  - The properties file rewritten in place (same path) and a reload: the
#    relay reads it again (a broken file shows 'configuration error', a
#    fixed one makes it run).
#  - Clearing eventbus.kafka_brokers and reloading stops the relay.
#  - eventbus.database naming a database without the extension: the log
#    says so, no relay runs and no slot is created there; creating the
#    extension there makes the relay run.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Spec;
use Time::HiRes qw(time usleep);

use RelayTest;

my $t0 = time();
my $db = 'postgres';

my $mock = RelayTest::MockKafka->start('--topic', 'ev:2');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('config', bootstrap => $bootstrap, start => 1);

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ev', 2);
SELECT eventbus.relay_topic('ev');
});
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE TABLE filler (x text)');

# Changes settings with ALTER SYSTEM and reloads (undef: RESET, back to
# postgresql.conf, which sets eventbus.kafka_brokers).
sub set_config
{
	my (%set) = @_;
	my $sql = '';
	foreach my $name (sort keys %set)
	{
		$sql .=
		  defined $set{$name}
		  ? "ALTER SYSTEM SET $name = '$set{$name}';\n"
		  : "ALTER SYSTEM RESET $name;\n";
	}
	$node->safe_psql('postgres', $sql . 'SELECT pg_reload_conf();');
}

sub relay_pid
{
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity WHERE backend_type = 'pg_eventbus relay'"
	);
}

# Relay worker exits in the log since $offset.
sub relay_exits
{
	my ($offset) = @_;
	my @exits = (log_since($node, $offset) =~
		  /background worker "pg_eventbus relay" \(PID \d+\) exited with exit code \d+/g);
	return scalar @exits;
}

# ---------------------------------------------------------------------------
# Retained WAL.

$node->safe_psql($db,
	q{SELECT count(*) FROM eventbus.publish_batch('ev', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 500) i))}
);
is(scalar(@{ wait_for_kafka($bootstrap, 'ev', 500, 30) }),
	500, 'relayed events arrive');

# Another database writes WAL for several seconds (about 25 MB).
my $writer = $node->background_psql('other');
$writer->query_until(
	qr/writing/, q{
\echo writing
DO $$
BEGIN
    FOR i IN 1..400 LOOP
        INSERT INTO filler SELECT repeat(md5(random()::text), 30) FROM generate_series(1, 50);
        COMMIT;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
});
usleep(500_000);
my $mark = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
ok( poll_until(10,
		sub { lsn_cmp(slot_confirmed_lsn($node), $mark) >= 0 }),
	"while another database writes, the slot is confirmed past $mark");
my $still_writing = $node->safe_psql('other',
	"SELECT count(*) FROM pg_stat_activity WHERE datname = 'other' AND query LIKE 'DO%' AND state = 'active'"
);
is($still_writing, '1', '... and the other database was still writing then');
$writer->query_safe('SELECT 1');    # waits for the DO block to end
$writer->quit;
my $written = $node->safe_psql('other', "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), '$mark'))");
note "WAL written by the other database after the mark: $written";

# Quiet now.  A checkpoint logs the running transactions, from which the
# slot's restart point moves on (the background writer does so every 15 s
# on a server that writes).
$node->safe_psql('postgres', 'CHECKPOINT');
my $retained;
ok( poll_until(
		20,
		sub {
			$retained = relay_status($node, $db)->{wal_retained_bytes};
			return defined $retained && $retained < 4 * 1024 * 1024;
		}),
	'an idle relay database retains less than 4 MB of WAL ('
	  . ($retained // 'NULL') . ' bytes)');
is( $node->safe_psql(
		$db,
		'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_lsn) < 65536 FROM eventbus.relay_status'
	),
	't',
	'when idle, confirmed_lsn is at the current WAL position');

# ---------------------------------------------------------------------------
# Unreachable brokers: a port nobody listens on.

my $closed = PostgreSQL::Test::Cluster::get_free_port();
my $offset = -s $node->logfile;
set_config('eventbus.kafka_brokers' => "127.0.0.1:$closed");
my $status;
ok( poll_until(
		15,
		sub {
			$status = relay_status($node, $db);
			return ($status->{last_error} // '') =~ /127\.0\.0\.1:$closed/;
		}),
	'unreachable brokers: relay_status shows an error naming them ("'
	  . ($status->{last_error} // '') . '")');
my $pid = relay_pid();
usleep(6_000_000);    # longer than the launcher's restart delay (5 s)
is(relay_pid(), $pid, 'unreachable brokers: the relay worker stays up (same pid)');
is(relay_exits($offset), 0, 'unreachable brokers: no relay worker exit in the log');
my @lines = grep { /pg_eventbus relay/ && !/statement: / } split /\n/,
  log_since($node, $offset);
note scalar(@lines) . " relay log lines in about 7 s:\n" . join("\n", @lines);
cmp_ok(scalar(@lines), '<=', 10,
	'unreachable brokers: the log is not flooded');

# Several unreachable brokers at once: librdkafka reports each broker's
# connection failure and "N/M brokers are down" (newer versions repeat
# these, with texts that differ from one report to the next).  They are one
# condition, logged at most once a minute: the log must not get a line per
# broker and report, and last_error still names a broker and the cause.
my @closed = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 8;
$offset = -s $node->logfile;
my $since_many = $node->safe_psql($db, 'SELECT now()');
set_config('eventbus.kafka_brokers' => join(',', map { "127.0.0.1:$_" } @closed));
my $closed_re = join('|', @closed);
ok( poll_until(
		15,
		sub {
			$status = relay_status($node, $db);
			return ($status->{last_error} // '') =~ /127\.0\.0\.1:($closed_re)/
			  && $node->safe_psql($db,
				"SELECT last_error_at > '$since_many' FROM eventbus.relay_status") eq 't';
		}),
	'several unreachable brokers: last_error names one of them ("'
	  . ($status->{last_error} // '') . '")');
usleep(6_000_000);
$status = relay_status($node, $db);
like($status->{last_error} // '', qr/127\.0\.0\.1:($closed_re)/,
	'several unreachable brokers: after a while last_error still names a broker ("'
	  . ($status->{last_error} // '') . '")');
like($status->{last_error} // '', qr/refused|connect/i,
	'several unreachable brokers: ... and the cause');
is($status->{state}, 'broker unreachable', 'several unreachable brokers: state broker unreachable');
# The relay's own reports; core's lines on starting to decode (logged again
# when the new settings restart the decoding session) are not reports.
@lines = grep {
	/pg_eventbus relay/ && !/statement: /
	  && !/starting logical decoding|logical decoding found consistent point|DETAIL:  (Streaming transactions|There are no running)/
} split /\n/, log_since($node, $offset);
note scalar(@lines) . " relay log lines in about 7 s:\n" . join("\n", @lines);
cmp_ok(scalar(@lines), '<=', 3,
	'several unreachable brokers: one report, not one per broker and error');

# ---------------------------------------------------------------------------
# An unknown Kafka property.

$offset = -s $node->logfile;
set_config(
	'eventbus.kafka_brokers' => $bootstrap,
	'eventbus.kafka_properties' => 'linger.ms=10, no.such.property=1');
ok( poll_until(
		15,
		sub {
			$status = relay_status($node, $db);
			return $status->{state} eq 'configuration error';
		}),
	"an unknown property: state 'configuration error'");
like($status->{last_error} // '', qr/no\.such\.property/,
	'an unknown property: last_error names it');
$pid = relay_pid();
usleep(6_000_000);
is(relay_pid(), $pid, 'an unknown property: the relay worker waits (same pid)');
is(relay_exits($offset), 0, 'an unknown property: no relay worker exit in the log');
my @warnings = (log_since($node, $offset) =~
	  /WARNING:  pg_eventbus relay: [^\n]*no\.such\.property/g);
is(scalar(@warnings), 1, 'an unknown property: one WARNING in the log');

set_config('eventbus.kafka_properties' => undef);
ok(wait_relay_running($node, $db, 15),
	'after fixing the property and a reload, the relay runs');
$node->safe_psql($db,
	q{SELECT eventbus.publish('ev', '{"after": "fix"}', key => 'fixed')});
ok( grep({ ($_->{key} // '') eq 'fixed' } @{ wait_for_kafka($bootstrap, 'ev', 501, 30) }),
	'after fixing the property, events are relayed again');

# ---------------------------------------------------------------------------
# A secret in the properties file, with a SASL mechanism that does not exist.

my $secret = 'hunter2';
# absolute: the server reads it from its data directory, and tempdir() is
# relative on some majors
my $file = File::Spec->rel2abs(PostgreSQL::Test::Utils::tempdir()) . '/kafka.properties';
PostgreSQL::Test::Utils::append_to_file(
	$file, qq{# relay credentials
security.protocol=sasl_plaintext
sasl.mechanism=NO-SUCH-MECHANISM
sasl.username=relay
sasl.password=$secret
});
my $since = $node->safe_psql($db, 'SELECT now()');
set_config('eventbus.kafka_properties_file' => $file);
ok( poll_until(
		15,
		sub {
			$node->safe_psql($db,
				"SELECT last_error_at > '$since' FROM eventbus.relay_status") eq 't';
		}),
	'a bad properties file: relay_status shows an error');
$status = relay_status($node, $db);
note 'with the bad properties file: ' . encode_json($status);
usleep(1_000_000);    # let anything the relay would log reach the log
unlike(encode_json(relay_status($node, $db)), qr/$secret/,
	'the secret does not appear in relay_status');
unlike(slurp_file($node->logfile), qr/$secret/,
	'the secret does not appear in the server log');
$node->safe_psql($db, 'CREATE ROLE app LOGIN');
foreach my $setting (qw(eventbus.kafka_properties eventbus.kafka_properties_file))
{
	my ($rc, $out, $err) =
	  $node->psql($db, "SET ROLE app; SHOW $setting", on_error_stop => 1);
	isnt($rc, 0, "a non-superuser cannot read $setting") or note $out;
}

# ---------------------------------------------------------------------------
# The properties file changed in place (a rotated secret): a reload makes
# the relay read it again, although its path did not change.

my $file2 = File::Spec->rel2abs(PostgreSQL::Test::Utils::tempdir()) . '/rotated.properties';
PostgreSQL::Test::Utils::append_to_file($file2, "linger.ms=5\n");
set_config('eventbus.kafka_properties_file' => $file2);
ok(wait_relay_running($node, $db, 15),
	'a valid properties file: the relay runs');
open(my $fh, '>', $file2) or die "could not write $file2: $!";
print $fh "linger.ms=5\nno.such.rotated.property=1\n";
close($fh);
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( poll_until(
		15,
		sub {
			$status = relay_status($node, $db);
			return $status->{state} eq 'configuration error'
			  && ($status->{last_error} // '') =~ /no\.such\.rotated\.property/;
		}),
	'the properties file changed in place and a reload: the relay reads it again ("'
	  . ($status->{last_error} // '') . '")');
open($fh, '>', $file2) or die "could not write $file2: $!";
print $fh "linger.ms=2\n";
close($fh);
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_relay_running($node, $db, 15),
	'the properties file fixed in place and a reload: the relay runs again');

# ---------------------------------------------------------------------------
# No brokers: no relay.

set_config(
	'eventbus.kafka_properties_file' => undef,
	'eventbus.kafka_brokers' => '');
ok(poll_until(15, sub { relay_pid() eq '' }),
	'after clearing eventbus.kafka_brokers and a reload, the relay worker is gone');
$status = relay_status($node, $db);
ok(!defined $status->{worker_pid} && $status->{state} =~ /\A(stopped|not configured)\z/,
	"relay_status: state '$status->{state}', no worker pid");

# ---------------------------------------------------------------------------
# eventbus.database without the extension.

$node->safe_psql('postgres', 'CREATE DATABASE noext');
$offset = -s $node->logfile;
set_config(
	'eventbus.database' => 'noext',
	'eventbus.kafka_brokers' => $bootstrap);
ok( poll_until(
		15,
		sub {
			log_since($node, $offset) =~
			  /LOG:  pg_eventbus: database "noext" named by eventbus.database does not have the extension installed/;
		}),
	'extension not installed in the database named by eventbus.database: the log says so');
ok(poll_until(15, sub { relay_pid() eq '' }),
	'... and no relay runs (neither there nor in the database no longer named)');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_replication_slots s JOIN pg_database d ON d.oid = s.datoid WHERE d.datname = 'noext'"),
	'0',
	'... and no slot was created there');

$node->safe_psql('noext', 'CREATE EXTENSION pg_eventbus');
ok(wait_relay_running($node, 'noext', 15),
	'once the extension is created there, the relay runs');

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
$mock->stop;
note sprintf('083_relay_config took %.1f s', time() - $t0);
done_testing();
