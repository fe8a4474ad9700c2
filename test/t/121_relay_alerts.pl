# The relay alert rules of monitoring/alerts.yml fire on a relay that is
# really stuck, and stay quiet for a healthy one.
#
# The relay is driven into real states against the mock Kafka cluster; in
# each, the real exporter (Debian's prometheus-postgres-exporter with
# monitoring/postgres_exporter/queries.yaml) is scraped, and every scraped
# eventbus series, held constant for 40 minutes, becomes the input of a
# `promtool test rules` unit test that evaluates every relay alert at 35
# minutes (past every relay rule's for:).  The alerts that fire are read
# from promtool's answer.
#
#  - healthy: events relayed and acknowledged, then a rolled-back publish
#    (which the backlog may count); no relay alert fires.
#  - brokers down after events were relayed, more events committed and
#    waiting (state 'broker unreachable'): EventbusRelayStuck (for that
#    topic), EventbusRelayNotRunning and, with messages in flight,
#    EventbusRelayNotAcknowledging fire.
#  - the server restarted while the brokers are still down, events
#    committed since and nothing acknowledged since the start (relay_backlog
#    is NULL then, last_ack_at too): the same three.
#  - on_error 'stop' and a message Kafka refuses for good (state 'stopped at
#    a refused message', nothing in flight): EventbusRelayStuck for that
#    topic only, and EventbusRelayNotRunning.
#
# Skipped, with the reason, where prometheus-postgres-exporter or promtool
# (Debian package prometheus) is missing, as 120_exporter.pl.

use strict;
use warnings;

use Cwd;
use JSON::PP;
use HTTP::Tiny;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RelayTest;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
my $promtool = '/usr/bin/promtool';
my $src = $ENV{EB_SRC} // '.';
plan skip_all => "$exporter not installed (Debian package prometheus-postgres-exporter)"
  unless -x $exporter;
plan skip_all => "$promtool not installed (Debian package prometheus)"
  unless -x $promtool;

my $t0 = time();
my $db = 'postgres';
my $rules = "$src/monitoring/alerts.yml";
$rules = Cwd::abs_path($rules);

# the relay alerts of the rules file
my @relay_alerts = slurp_file($rules) =~ /^\s*- alert: (EventbusRelay\w*)$/mg;
note "relay alerts: @relay_alerts";

my $mock = RelayTest::MockKafka->start('--topic', 'ok:1', '--topic', 'secret:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('alerts', bootstrap => $bootstrap, start => 1);
$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('ok', 1);
SELECT eventbus.create_topic('secret', 1);
SELECT eventbus.relay_topic('ok');
SELECT eventbus.relay_topic('secret', on_error => 'stop');
});

sub publish
{
	my ($topic, $tag, $n) = @_;
	$node->safe_psql($db,
		"SELECT count(*) FROM eventbus.publish_batch('$topic', ARRAY(SELECT jsonb_build_object('tag', '$tag', 'i', i) FROM generate_series(1, $n) i))"
	);
}

sub kafka_count
{
	my ($topic, $tag) = @_;
	return scalar grep { $_->{value} =~ /"tag": "$tag"/ }
	  @{ kafka_read($bootstrap, $topic) // [] };
}

# One scrape of the exporter, started for it (it reconnects to no server
# after a restart by itself); returns the eventbus series as
# [name{labels}, value] pairs.
my $xport = PostgreSQL::Test::Cluster::get_free_port();
my $log = $PostgreSQL::Test::Utils::tmp_check . '/exporter.log';
my $http = HTTP::Tiny->new(timeout => 10);

sub scrape
{
	my $dsn = sprintf('postgresql://%s@:%d/%s?host=%s&sslmode=disable',
		scalar(getpwuid($<)), $node->port, $db, $node->host);
	my $h = IPC::Run::start(
		[
			$exporter, "--web.listen-address=127.0.0.1:$xport",
			"--extend.query-path=$src/monitoring/postgres_exporter/queries.yaml",
			'--disable-default-metrics', '--disable-settings-metrics'
		],
		'>>', $log, '2>&1',
		init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });
	my $body = '';
	poll_until(
		10,
		sub {
			my $r = $http->get("http://127.0.0.1:$xport/metrics");
			$body = $r->{content}
			  if $r->{success} && $r->{content} =~ /^eventbus_relay_wal_retained_bytes/m;
			return $body ne '';
		});
	$h->kill_kill;
	die "the exporter served no relay series: " . slurp_file($log)
	  if $body eq '';
	my @series;
	foreach my $line (split /\n/, $body)
	{
		push @series, [ $1, $2 ] if $line =~ /^(eventbus_\w+(?:\{[^}]*\})?) (\S+)$/;
	}
	return \@series;
}

# The relay alerts that fire after 35 minutes of these series held
# constant, as promtool test rules finds them: every relay alert is
# expected quiet, and the failures name those that fired.
my $case = 0;

sub firing
{
	my ($series) = @_;
	my $file = $PostgreSQL::Test::Utils::tmp_check . '/alert_test_' . ++$case . '.yml';
	my $y = "rule_files: ['$rules']\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n";
	foreach my $s (@$series)
	{
		my ($name, $v) = @$s;
		$v = 0 if $v eq 'NaN';
		# the labels Prometheus adds to every scraped series
		$name .= '{}' unless $name =~ /\}$/;
		$name =~ s/\}$/,job="eventbus",instance="db:9187"}/;
		$name =~ s/\{,/{/;
		(my $q = $name) =~ s/'/''/g;
		# no acknowledgement comes in these 40 minutes: the age of the last
		# one grows by a minute a minute (-1, none since the start, stays)
		my $step = ($name =~ /^eventbus_relay_last_ack_age_seconds\{/ && $v >= 0) ? 60 : 0;
		$y .= "      - series: '$q'\n        values: '$v+${step}x40'\n";
	}
	$y .= "    alert_rule_test:\n";
	$y .= "      - eval_time: 35m\n        alertname: $_\n        exp_alerts: []\n"
	  foreach @relay_alerts;
	append_to_file($file, $y);
	my ($out, $err) = ('', '');
	IPC::Run::run([ $promtool, 'test', 'rules', $file ], '>', \$out, '2>', \$err);
	my %fired;
	my $answer = "$out$err";
	while ($answer =~ /alertname: (\w+), time: \S+,\s*exp:\[\],\s*got:\[\s*0:(.*?)\n\s*\]/sg)
	{
		$fired{$1} = $2;
	}
	die "promtool test rules $file: $out$err"
	  if !%fired && $? != 0;
	note "$file: " . (join(', ', sort keys %fired) || 'no relay alert');
	note "  $_: $fired{$_}" foreach sort keys %fired;
	return \%fired;
}

# the relay series of a scrape, for the log
sub show
{
	my ($what, $series) = @_;
	note "$what: " . join(' ', map { "$_->[0]=$_->[1]" }
		  grep { $_->[0] =~ /^eventbus_(relay|topic_relayed)/ } @$series);
}

# The sum of a scraped metric's series.
sub total
{
	my ($series, $metric) = @_;
	my $sum = 0;
	$sum += $_->[1] foreach grep { $_->[0] =~ /^\Q$metric\E(\{|$)/ } @$series;
	return $sum;
}

# With messages in flight (at-least-once sends during an outage; an
# exactly-once relay may wait before its first transaction), and no
# acknowledgement for long or none since the start,
# EventbusRelayNotAcknowledging fires.
sub not_acknowledging
{
	my ($series, $fired, $what) = @_;
	my $in_flight = total($series, 'eventbus_relay_messages_in_flight');
	if ($in_flight > 0)
	{
		ok($fired->{EventbusRelayNotAcknowledging},
			"$what: $in_flight in flight: EventbusRelayNotAcknowledging fires");
	}
	else
	{
		ok(!$fired->{EventbusRelayNotAcknowledging},
			"$what: nothing in flight: EventbusRelayNotAcknowledging does not fire");
	}
}

sub status_line
{
	my $s = relay_status($node, $db);
	return sprintf('state "%s", messages_in_flight %s, backlog %s, last_ack_at %s',
		$s->{state}, $s->{messages_in_flight} // 'NULL',
		defined $s->{backlog} ? encode_json($s->{backlog}) : 'NULL',
		$s->{last_ack_at} // 'NULL');
}

# ---------------------------------------------------------------------------
# healthy

publish('ok', 'warm', 5);
ok(poll_until(30, sub { kafka_count('ok', 'warm') == 5 }), 'healthy: events are relayed');
ok( poll_until(
		30,
		sub {
			$node->safe_psql($db,
				q{SELECT state = 'running' AND messages_in_flight = 0 AND coalesce((backlog->>'ok')::int, 0) = 0 FROM eventbus.relay_status}
			) eq 't';
		}),
	'healthy: running, nothing in flight, no backlog');
# a rolled-back publish after the last relayed event: the backlog (an upper
# bound) may count its position until the next event is acknowledged
$node->safe_psql($db,
	q{BEGIN; SELECT eventbus.publish('ok', '{"rolled": "back"}'); ROLLBACK;});
usleep(1_000_000);
note 'healthy after a rolled-back publish: ' . status_line();
note 'healthy: ' . status_line();
my $healthy = scrape();
show('healthy', $healthy);
is_deeply([ sort keys %{ firing($healthy) } ], [], 'healthy: no relay alert fires');

# ---------------------------------------------------------------------------
# (a) brokers down, events committed and waiting

is($mock->command('down 1'), 'ok', 'the only broker goes down');
publish('ok', 'outage', 5);
my ($status, $fired);
ok( poll_until(
		60,
		sub {
			$status = relay_status($node, $db);
			return $status->{state} eq 'broker unreachable';
		}),
	'outage: state "broker unreachable"')
  or diag(encode_json($status));
note 'outage: ' . status_line();
my $outage = scrape();
show('outage', $outage);
$fired = firing($outage);
like($fired->{EventbusRelayStuck} // '', qr/topic="ok"/,
	'outage: EventbusRelayStuck fires for topic "ok"');
ok($fired->{EventbusRelayNotRunning}, 'outage: EventbusRelayNotRunning fires');
not_acknowledging($outage, $fired, 'outage');

# (a') the server restarts while the brokers stay down: nothing is
# acknowledged since the start, more events wait
$node->restart;
publish('ok', 'restart', 5);
ok( poll_until(
		60,
		sub {
			$status = relay_status($node, $db);
			return $status->{state} ne 'running' && $status->{state} ne 'starting'
			  && $status->{state} ne 'creating slot';
		}),
	'outage after a restart: the relay does not run')
  or diag(encode_json($status));
usleep(3_000_000);
note 'outage after a restart: ' . status_line();
my $restarted = scrape();
show('outage after a restart', $restarted);
$fired = firing($restarted);
like($fired->{EventbusRelayStuck} // '', qr/topic="ok"/,
	'outage after a restart: EventbusRelayStuck fires for topic "ok"');
ok($fired->{EventbusRelayNotRunning},
	'outage after a restart: EventbusRelayNotRunning fires');
not_acknowledging($restarted, $fired, 'outage after a restart');

is($mock->command('up 1'), 'ok', 'the broker is up again');
ok(poll_until(60, sub { kafka_count('ok', 'restart') >= 5 }),
	'after the outage the waiting events arrive');

# ---------------------------------------------------------------------------
# (b) stopped at a refused message

# As a broker that stops authorizing a topic: its metadata and the next
# produce request say so.  The relay described "secret" when its session
# began; at-least-once sends at once on that answer and learns of the
# refusal from the produce request, exactly-once asks again first (before
# its Kafka transaction) and leaves the produce error unused.
is($mock->command('topic_error secret TOPIC_AUTHORIZATION_FAILED'),
	'ok', 'Kafka topic "secret" is not authorized from now on');
is($mock->command('produce_errors 1 TOPIC_AUTHORIZATION_FAILED'),
	'ok', '... and the next produce request is refused');
publish('secret', 'refused', 1);
ok( poll_until(
		60,
		sub {
			$status = relay_status($node, $db);
			return $status->{state} eq 'stopped at a refused message';
		}),
	'stop: state "stopped at a refused message"')
  or diag(encode_json($status));
note 'stop: ' . status_line();
my $stopped = scrape();
show('stop', $stopped);
$fired = firing($stopped);
like($fired->{EventbusRelayStuck} // '', qr/topic="secret"/,
	'stop: EventbusRelayStuck fires for topic "secret"');
unlike($fired->{EventbusRelayStuck} // '', qr/topic="ok"/,
	'stop: ... not for topic "ok", whose events are relayed');
ok($fired->{EventbusRelayNotRunning}, 'stop: EventbusRelayNotRunning fires');

# the states a stopped relay goes through between its attempts
my %seen;
foreach (1 .. 10)
{
	$seen{ relay_status($node, $db)->{state} }++;
	usleep(500_000);
}
note 'stop: states seen over 5 s: ' . join(', ', map { "$_ ($seen{$_})" } sort keys %seen);

$node->stop;
$mock->stop;
note sprintf('121_relay_alerts took %.1f s', time() - $t0);
done_testing();
