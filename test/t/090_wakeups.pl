# Wake-ups: LISTEN "eventbus.<topic>" is notified after a publishing
# transaction commits or rolls back (it held back the read horizon), never
# while it is open; bursts are
# coalesced; eventbus.wait() returns at once for events committed before
# the call, wakes on a commit during the call and times out otherwise; a
# prepared transaction wakes them at COMMIT or ROLLBACK PREPARED, not at
# PREPARE; and
# without the database worker, LISTEN stays silent but wait() still works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('wakeups');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.database = 'postgres'
eventbus.notify_interval = 50ms
eventbus.maintenance_naptime = 1h
max_prepared_transactions = 5
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('w', 2);
	SELECT eventbus.create_group('g', 'w', 'latest');
	CREATE PROCEDURE burst(n int) LANGUAGE plpgsql AS $$
	BEGIN
	  FOR i IN 1 .. n LOOP
	    PERFORM eventbus.publish('w', jsonb_build_object('i', i));
	    COMMIT;
	  END LOOP;
	END $$;
});
$node->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_eventbus worker'", '1')
  or die 'no database worker';

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN "eventbus.w"');

# Notifications psql printed since the last call.
sub notifications
{
	my ($psql) = @_;
	my $out = $psql->query_safe('SELECT 1');
	return [ $out =~ /Asynchronous notification "eventbus\.w" with payload "(.*?)" received/g ];
}

sub wait_for_notifications
{
	my ($psql, $seconds) = @_;
	my $deadline = time() + $seconds;
	my @got;
	while (time() < $deadline)
	{
		push @got, @{ notifications($psql) };
		return \@got if @got;
		usleep(50_000);
	}
	return \@got;
}

# Nothing while the producer's transaction is open; a notification after
# its commit.
my $producer = $node->background_psql('postgres');
$producer->query_safe('BEGIN');
$producer->query_safe(q{SELECT eventbus.publish('w', '{"n": 1}')});
usleep(500_000);
is(scalar @{ notifications($listener) }, 0, 'no notification before commit');
$producer->query_safe('COMMIT');
my $got = wait_for_notifications($listener, 10);
is(scalar @$got, 1, 'one notification after commit');
like($got->[0], qr/^\{"topic": "w", "end_positions": \[\d+, \d+\]\}$/,
	'the payload names the topic and its end positions');

# A producer that rolls back wakes subscribers too: while open, it held
# back the events committed behind its positions, which are readable now.
$producer->query_safe('BEGIN');
$producer->query_safe(q{SELECT eventbus.publish('w', '{"n": 2}', partition => 0)});
$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": "behind"}', partition => 0)});
wait_for_notifications($listener, 10);
usleep(300_000);
notifications($listener);
$producer->query_safe('ROLLBACK');
$got = wait_for_notifications($listener, 10);
is(scalar @$got, 1, 'a notification after a rollback of a producer holding back the horizon');

# A burst of 300 commits is coalesced; the last notification carries the
# final end positions.
$node->safe_psql('postgres', 'CALL burst(300)');
my $final = $node->safe_psql('postgres',
	"SELECT array_agg(end_position ORDER BY partition) FROM eventbus.topic_partitions('w')");
$final =~ s/[{}]//g;
$final =~ s/,/, /g;
usleep(500_000);
my $burst = notifications($listener);
cmp_ok(scalar @$burst, '>=', 1, 'the burst was notified');
cmp_ok(scalar @$burst, '<', 150, 'the burst was coalesced: ' . scalar(@$burst) . ' notifications for 300 commits');
like($burst->[-1], qr/"end_positions": \[\Q$final\E\]/, 'the last notification shows the final end positions');

# wait(): at once for events committed before the call, on timeout without.
$node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.poll('g', 'w', 100000, commit => true)});
my $t0 = time();
is($node->safe_psql('postgres', q{SELECT eventbus.wait('g', 'w', '0.5 seconds')}), 'f',
	'wait times out without events');
cmp_ok(time() - $t0, '>=', 0.45, 'after the timeout');
# A timeout of ages is capped at a day, not wrapped around to "now".
my ($rc, $out, $err) = $node->psql('postgres',
	q{SET statement_timeout = '1s'; SELECT eventbus.wait('g', 'w', '1000000 years')});
like($err, qr/statement timeout/, 'a timeout of a million years sleeps (until statement_timeout)');
$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": 3}')});
$t0 = time();
is($node->safe_psql('postgres', q{SELECT eventbus.wait('g', 'w', '30 seconds')}), 't',
	'wait returns true for an event committed just before the call');
cmp_ok(time() - $t0, '<', 5, 'at once');

# wait() woken by a commit during the call.
$node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.poll('g', 'w', 100000, commit => true)});
my $waiter = $node->background_psql('postgres');
$waiter->query_until(qr/waiting/, q{\echo waiting
SELECT eventbus.wait('g', 'w', '60 seconds') AS woke \gset
\echo done :woke
});
usleep(300_000);
$t0 = time();
$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": 4}')});
my $woke = $waiter->query_until(qr/done/, '');
like($woke, qr/done t/, 'wait returned true after a commit during the call');
cmp_ok(time() - $t0, '<', 10, 'well before its timeout');
$waiter->quit;

# A prepared transaction: nothing at PREPARE TRANSACTION, a notification
# and a woken wait() at COMMIT PREPARED (from another session).
$node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.poll('g', 'w', 100000, commit => true)});
notifications($listener);
$producer->query_safe('BEGIN');
$producer->query_safe(q{SELECT eventbus.publish('w', '{"n": "prepared"}')});
$producer->query_safe(q{PREPARE TRANSACTION 'wake-1'});
$waiter = $node->background_psql('postgres');
$waiter->query_until(qr/waiting/, q{\echo waiting
SELECT eventbus.wait('g', 'w', '60 seconds') AS woke \gset
\echo done :woke
});
usleep(600_000);
is(scalar @{ notifications($listener) }, 0, 'no notification at PREPARE TRANSACTION');
$t0 = time();
$node->safe_psql('postgres', q{COMMIT PREPARED 'wake-1'});
$got = wait_for_notifications($listener, 10);
is(scalar @$got, 1, 'a notification after COMMIT PREPARED');
$woke = $waiter->query_until(qr/done/, '');
like($woke, qr/done t/, 'wait returned true after COMMIT PREPARED');
cmp_ok(time() - $t0, '<', 10, 'well before its timeout');
$waiter->quit;

# ROLLBACK PREPARED wakes them as well: the prepared transaction no longer
# holds back the horizon.
$producer->query_safe('BEGIN');
$producer->query_safe(q{SELECT eventbus.publish('w', '{"n": "rolled back"}')});
$producer->query_safe(q{PREPARE TRANSACTION 'wake-2'});
usleep(600_000);
is(scalar @{ notifications($listener) }, 0, 'no notification at PREPARE TRANSACTION');
$node->safe_psql('postgres', q{ROLLBACK PREPARED 'wake-2'});
$got = wait_for_notifications($listener, 10);
is(scalar @$got, 1, 'a notification after ROLLBACK PREPARED');

# Listeners are counted per topic while they are connected: after the last
# one of a topic left, commits to it mark nothing for the worker; a session that LISTENs later
# is notified of what commits after its LISTEN, also when its first LISTEN
# was rolled back, and also right after the LISTEN commits.
$listener->quit;
$node->poll_query_until('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'}, '0')
  or die 'the listener did not leave';
$node->safe_psql('postgres', 'CALL burst(20)');

# Counts are per topic: a session that listens to another topic only is
# not counted for w.  When it then LISTENs to w too, it is counted for w
# before that LISTEN runs, and is notified of the next commit.
for my $round (1 .. 3)
{
	my $other = $node->background_psql('postgres');
	$other->query_safe(qq{LISTEN "eventbus.other_$round"});
	$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": "another topic listened"}')});
	usleep(300_000);
	is(scalar @{ notifications($other) }, 0, "round $round: a listener of another topic hears nothing of w");
	$other->query_safe(q{LISTEN "eventbus.w"});
	$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": "w listened too"}')});
	$got = wait_for_notifications($other, 10);
	is(scalar @$got, 1, "round $round: after LISTEN w as well, the next commit to w is notified");
	$other->quit;
}
$listener = $node->background_psql('postgres');
$listener->query_safe('BEGIN');
$listener->query_safe('LISTEN "eventbus.w"');
$listener->query_safe('ROLLBACK');
$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": "nobody listens"}')});
usleep(300_000);
is(scalar @{ notifications($listener) }, 0, 'a rolled-back LISTEN receives nothing');
$listener->query_safe('LISTEN "eventbus.w"');
$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": "listened"}')});
$got = wait_for_notifications($listener, 10);
is(scalar @$got, 1, 'a listener that came after the last one left is notified');
for my $round (1 .. 5)
{
	my $late = $node->background_psql('postgres');
	$late->query_safe(q{LISTEN "eventbus.w"});
	$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": "right after"}')});
	$got = wait_for_notifications($late, 10);
	is(scalar @$got, 1, "round $round: a commit right after the LISTEN is notified");
	$late->quit;
}
notifications($listener);

# Without the database worker: no notifications, wait() still works.
$node->safe_psql('postgres', 'CREATE DATABASE elsewhere');
$node->safe_psql('postgres', q{ALTER SYSTEM SET eventbus.database = 'elsewhere'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_eventbus worker' AND datname = 'postgres'", '0')
  or die 'the worker of postgres did not stop';
notifications($listener);
$node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.poll('g', 'w', 100000, commit => true)});
$node->safe_psql('postgres', q{SELECT eventbus.publish('w', '{"n": 5}')});
usleep(800_000);
is(scalar @{ notifications($listener) }, 0,
	'no notification when eventbus.database leaves the database out');
is($node->safe_psql('postgres', q{SELECT eventbus.wait('g', 'w', '5 seconds')}), 't',
	'wait() does not need the worker');

$listener->quit;
$producer->quit;
$node->stop;
done_testing();
