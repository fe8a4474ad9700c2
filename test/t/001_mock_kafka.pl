#
# 001_mock_kafka.pl
#	The mock Kafka helper (test/mock_kafka.c) that the relay tests run
#	against: its bootstrap line, producing and consuming with kcat, topic
#	creation, a broker outage and recovery, its command errors, and how it
#	exits (quit, end of stdin, SIGTERM with --no-stdin, usage errors).
#
# No PostgreSQL server is needed.  $ENV{EB_MOCK_KAFKA} is the helper's path
# (scripts/test.sh sets it); kcat must be in PATH.
#
use strict;
use warnings;

use IPC::Run qw(run start timeout timer);
use PostgreSQL::Test::Utils;
use Test::More;

my $mock_kafka = $ENV{EB_MOCK_KAFKA}
  or die "EB_MOCK_KAFKA must name the mock_kafka helper (see scripts/test.sh)";
-x $mock_kafka or die "\"$mock_kafka\" is not executable";

# Every wait is bounded, so a hang fails the test in seconds, not minutes.
my $answer_timeout = 10;    # seconds for the helper to answer a command
my $kcat_timeout   = 15;    # seconds for one kcat run

# Runs kcat with the given standard input and arguments.  Returns its exit
# code (-1 if it had to be killed after $kcat_timeout) and its stdout;
# stderr goes to the test log.
sub kcat
{
	my ($stdin, @args) = @_;
	my ($stdout, $stderr) = ('', '');
	my $code;

	note "kcat @args";
	eval {
		run([ 'kcat', @args ],
			'<', \$stdin, '>', \$stdout, '2>', \$stderr,
			timeout($kcat_timeout));
		$code = $? >> 8;
		1;
	} or do {
		note "kcat did not finish: $@";
		$code = -1;
	};
	note "kcat exit code $code, stderr:\n$stderr" if $stderr ne '';
	return ($code, $stdout);
}

# Produces "key:value" lines to a topic; returns kcat's exit code.
# message.timeout.ms bounds how long a message may wait for delivery.
sub produce
{
	my ($bootstrap, $topic, $lines, $msg_timeout_ms) = @_;
	my ($code) = kcat($lines, '-P', '-b', $bootstrap, '-t', $topic, '-K:',
		'-X', "message.timeout.ms=$msg_timeout_ms");
	return $code;
}

# Consumes a topic from the beginning to its end (-e) and returns the
# messages as sorted "key=value" strings (partitions interleave in any
# order), or undef if kcat failed.
sub consume_all
{
	my ($bootstrap, $topic) = @_;
	my ($code, $stdout) = kcat('', '-C', '-b', $bootstrap, '-t', $topic,
		'-o', 'beginning', '-e', '-f', '%k=%s\n');
	return undef if $code != 0;
	return [ sort split /\n/, $stdout ];
}

# A topic's partition count as reported by broker metadata, or undef.
sub partition_count
{
	my ($bootstrap, $topic) = @_;
	my ($code, $stdout) = kcat('', '-L', '-b', $bootstrap, '-t', $topic);
	return undef if $code != 0;
	return $stdout =~ /^\s*topic "\Q$topic\E" with (\d+) partitions/m
	  ? $1
	  : undef;
}

# Starts the helper with the given stdin, stdout and stderr and waits for
# its BOOTSTRAP line.  Returns the harness, its timer (IPC::Run checks a
# timer only while it is part of the harness, so each helper gets one) and
# the bootstrap servers, or undef for them if no proper line came.
sub start_helper
{
	my ($in, $out, $err, @args) = @_;
	my $timer = timer($answer_timeout);
	my $h = start([ $mock_kafka, @args ],
		'<', $in, '>', $out, '2>', $err, $timer);
	pump_until($h, $timer, $out, qr/\n/);
	my ($bootstrap) = $$out =~ /\ABOOTSTRAP=(\S+)\n\z/;
	note "mock_kafka printed \"$$out\", stderr \"$$err\""
	  unless defined $bootstrap;
	return ($h, $timer, $bootstrap);
}

# Waits for a started helper to exit without closing its stdin first, so
# only the helper's own decision (or a signal) can end it.  Returns its raw
# wait status, or -1 if it is still running after $answer_timeout (it is
# then killed).
sub wait_exit
{
	my ($h, $timer) = @_;

	$timer->start($answer_timeout);
	$h->pump while $h->pumpable && !$timer->is_expired;
	if ($h->pumpable)
	{
		note "mock_kafka did not exit in time";
		$h->kill_kill;
		return -1;
	}
	$h->finish;
	return $h->full_result(0);
}

#
# The helper with one broker and topic t1 of 3 partitions, driven over stdin.
#
my ($in, $out, $err) = ('', '', '');
my ($mock, $mock_timer, $bootstrap) =
  start_helper(\$in, \$out, \$err, '--topic', 't1:3');
like($bootstrap, qr/\A127\.0\.0\.1:\d+\z/,
	'one broker, listening on 127.0.0.1');
defined $bootstrap or BAIL_OUT('mock_kafka did not start');

# Sends one command and returns the helper's one-line answer.
sub command
{
	my ($cmd) = @_;
	$out = '';
	$in .= "$cmd\n";
	$mock_timer->start($answer_timeout);
	pump_until($mock, $mock_timer, \$out, qr/\n/);
	return $out =~ /\A(.*)\n\z/ ? $1 : "no proper answer: \"$out\"";
}

# 1. Keyed messages go in and come back with their keys.  Unknown topics
# would be auto-created with 4 partitions, so 3 shows --topic took effect.
is(partition_count($bootstrap, 't1'), 3, '--topic t1:3 created 3 partitions');

my @first = map { "key$_:value$_" } 1 .. 6;
is(produce($bootstrap, 't1', join('', map { "$_\n" } @first), 5000),
	0, 'producing keyed messages succeeds');
my @expected = sort map { s/:/=/r } @first;
is_deeply(consume_all($bootstrap, 't1'),
	\@expected, 'every message is read back with its key');

# 2. Topic creation over stdin, and errors for bad commands.
is(command('create t2 2'), 'ok', 'create t2 2 is accepted');
is(partition_count($bootstrap, 't2'), 2, 'metadata shows t2 with 2 partitions');
like(command('create t2 2'), qr/\Aerror .+/, 'creating t2 again is an error');
like(command('create bad/name 1'), qr/\Aerror .+/, 'an invalid topic name is an error');
like(command('down 2'), qr/\Aerror .+/, 'a broker id beyond the cluster is an error');
like(command('launch'), qr/\Aerror .+/, 'an unknown command is an error');

# 3. A broker outage.  A downed mock broker refuses connections (without a
# leader change), so no message to t1 can be delivered.  kcat's exit code
# is the check: it exits non-zero both when it gives up because all brokers
# are down and when a message's delivery times out (message.timeout.ms), so
# the check does not depend on which of the two happens first.  The same
# command succeeds before and after the outage, and the consumer below
# proves the message sent during the outage never arrived.
is(command('down 1'), 'ok', 'down 1 is accepted');
isnt(produce($bootstrap, 't1', "key7:lost\n", 2000),
	0, 'producing fails while the broker is down');
is(command('up 1'), 'ok', 'up 1 is accepted');
is(produce($bootstrap, 't1', "key8:value8\n", 5000),
	0, 'producing succeeds once the broker is up again');
is_deeply(
	consume_all($bootstrap, 't1'),
	[ sort @expected, 'key8=value8' ],
	'the message produced after the outage arrives, the one during it does not');

# 4. quit: answered, then a clean exit.
is(command('quit'), 'ok', 'quit is answered');
is(wait_exit($mock, $mock_timer), 0, 'quit exits with status 0, stdin still open');
note "mock_kafka stderr:\n$err" if $err ne '';

#
# End of stdin also ends the helper cleanly.
#
($in, $out, $err) = ('', '', '');
my ($eof, $eof_timer, $eof_bootstrap) =
  start_helper('/dev/null', \$out, \$err, '--brokers', '3');
like(
	$eof_bootstrap,
	qr/\A127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\z/,
	'--brokers 3 prints three bootstrap servers');
is(wait_exit($eof, $eof_timer), 0, 'end of stdin exits with status 0');
is($out, "BOOTSTRAP=$eof_bootstrap\n",
	'nothing is printed after the bootstrap line at end of stdin');

#
# --no-stdin: stdin is at end of input from the start, yet the helper keeps
# serving until SIGTERM.
#
($in, $out, $err) = ('', '', '');
my ($bg, $bg_timer, $bg_bootstrap) =
  start_helper('/dev/null', \$out, \$err, '--no-stdin', '--topic', 'bg:5');
ok(defined $bg_bootstrap, '--no-stdin prints the bootstrap line');
is(partition_count($bg_bootstrap // '127.0.0.1:1', 'bg'),
	5, '--no-stdin keeps serving after end of stdin');
$bg->signal('TERM');
is(wait_exit($bg, $bg_timer), 0, 'SIGTERM exits with status 0');

#
# Usage errors: exit code 2 and a message, before any cluster starts.
#
foreach my $args ([ '--brokers', '0' ], [ '--topic', 't1' ],
	[ '--topic', 't1:0' ], [ '--bogus' ])
{
	my ($uout, $uerr) = ('', '');
	run([ $mock_kafka, @$args ], '<', \undef, '>', \$uout, '2>', \$uerr,
		timeout($answer_timeout));
	is($? >> 8, 2, "usage error for \"@$args\" exits with status 2");
	like($uerr, qr/\Amock_kafka: \S.*\n/,
		"usage error for \"@$args\" is explained on stderr");
	is($uout, '', "usage error for \"@$args\" prints no bootstrap line");
}

done_testing();
