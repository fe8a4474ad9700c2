# Listener counts per topic: a listener is notified of a commit that
# follows its LISTEN's commit when the topic's name is 54 bytes of mixed
# case, when LISTEN ran through plpgsql EXECUTE, when its first LISTEN of
# the channel was rolled back, when the commit published to more topics
# than a transaction tracks one by one (the whole database is woken), and
# at COMMIT PREPARED; and it stays counted when another listener of the same
# topic is terminated.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('listen_counts');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.database = 'postgres'
eventbus.notify_interval = 10ms
eventbus.maintenance_naptime = 1h
max_prepared_transactions = 5
});
$node->start;
my $long = 'Ab' . ('x' x 51) . 'Z';    # 54 bytes, mixed case
is(length($long), 54, 'a 54-byte topic name');
$node->safe_psql('postgres', qq{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('$long', 1);
	SELECT eventbus.create_topic('viaexec', 1);
	SELECT eventbus.create_topic('rb', 1);
	SELECT eventbus.create_topic('prep', 1);
	SELECT eventbus.create_topic('ov' || i, 1) FROM generate_series(1, 40) i;
});
$node->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_eventbus worker'", '1')
  or die 'no database worker';

sub wait_for
{
	my ($psql, $channel, $seconds) = @_;
	my $deadline = time() + $seconds;
	my $all = '';
	while (time() < $deadline)
	{
		$all .= $psql->query_safe('SELECT 1');
		return 1 if $all =~ /Asynchronous notification "\Q$channel\E"/;
		usleep(50_000);
	}
	return 0;
}

sub none_for
{
	my ($psql, $channel) = @_;
	usleep(300_000);
	return $psql->query_safe('SELECT 1') !~ /Asynchronous notification "\Q$channel\E"/;
}

# 54-byte mixed-case name
my $l = $node->background_psql('postgres');
$l->query_safe(qq{LISTEN "eventbus.$long"});
$node->safe_psql('postgres', qq{SELECT eventbus.publish('$long', '{}')});
ok(wait_for($l, "eventbus.$long", 10), 'a 54-byte mixed-case topic is notified');
$l->quit;

# LISTEN through plpgsql EXECUTE
$l = $node->background_psql('postgres');
$l->query_safe(q{DO $$ BEGIN EXECUTE 'LISTEN "eventbus.viaexec"'; END $$});
$node->safe_psql('postgres', q{SELECT eventbus.publish('viaexec', '{}')});
ok(wait_for($l, 'eventbus.viaexec', 10), 'LISTEN run by EXECUTE is counted');
$l->quit;

# first LISTEN rolled back, then LISTEN again
$l = $node->background_psql('postgres');
$l->query_safe('BEGIN');
$l->query_safe('LISTEN "eventbus.rb"');
$l->query_safe('ROLLBACK');
$node->safe_psql('postgres', q{SELECT eventbus.publish('rb', '{}')});
ok(none_for($l, 'eventbus.rb'), 'nothing after the rolled-back LISTEN');
$l->query_safe('LISTEN "eventbus.rb"');
$node->safe_psql('postgres', q{SELECT eventbus.publish('rb', '{}')});
ok(wait_for($l, 'eventbus.rb', 10), 'LISTEN again after a rolled-back one is notified');
$l->quit;

# overflow: one transaction publishes to 40 topics, one of them listened
$l = $node->background_psql('postgres');
$l->query_safe('LISTEN "eventbus.ov37"');
$node->safe_psql('postgres', q{SELECT eventbus.publish('ov' || i, '{}') FROM generate_series(1, 40) i});
ok(wait_for($l, 'eventbus.ov37', 10), 'published overflow: the listened topic is notified');
$l->quit;

# COMMIT PREPARED
$l = $node->background_psql('postgres');
$l->query_safe('LISTEN "eventbus.prep"');
$node->safe_psql('postgres', q{BEGIN; SELECT eventbus.publish('prep', '{}'); PREPARE TRANSACTION 'p1';});
ok(none_for($l, 'eventbus.prep'), 'nothing at PREPARE');
$node->safe_psql('postgres', q{COMMIT PREPARED 'p1'});
ok(wait_for($l, 'eventbus.prep', 10), 'COMMIT PREPARED notifies');

# another listener of the same topic ends with FATAL: the first stays counted
my $l2 = $node->background_psql('postgres');
$l2->query_safe('LISTEN "eventbus.prep"');
my $pid = $l2->query_safe('SELECT pg_backend_pid()');
$pid =~ s/\D//g;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->poll_query_until('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0');
eval { $l2->quit };
$node->safe_psql('postgres', q{SELECT eventbus.publish('prep', '{}')});
ok(wait_for($l, 'eventbus.prep', 10), 'still notified after another listener was terminated');
$l->quit;

$node->stop;
done_testing();
