# eventbus.wait() does not hold back the xmin horizon while it sleeps when
# it is the whole statement: another session sees no backend_xmin for it
# (it would keep vacuum from removing dead rows for the whole timeout).
# Inside a transaction block it keeps the statement's snapshot.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('wait_xmin');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.maintenance_naptime = 1h
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_eventbus;
	SELECT eventbus.create_topic('x', 1);
	SELECT eventbus.create_group('g', 'x', 'latest');
});

my $sleeping = q{SELECT count(*) FROM pg_stat_activity
  WHERE wait_event_type = 'Extension' AND query LIKE '%eventbus.wait(%'
    AND pid <> pg_backend_pid()};

# A statement of its own: no xmin while it sleeps.
my $waiter = $node->background_psql('postgres');
$waiter->query_until(qr/waiting/, q{\echo waiting
SELECT eventbus.wait('g', 'x', '5 minutes') AS woke \gset
\echo done :woke
});
$node->poll_query_until('postgres', $sleeping, '1') or die 'wait() is not sleeping';
ok($node->poll_query_until('postgres',
	$sleeping . q{ AND backend_xmin IS NULL}, '1'),
	'a sleeping wait() holds back no xmin');
$node->safe_psql('postgres', q{SELECT eventbus.publish('x', '{"n": 1}')});
like($waiter->query_until(qr/done/, ''), qr/done t/, 'and it wakes for a commit');
$waiter->quit;

# In a transaction block (a cursor of the transaction could read later with
# the old snapshot) it keeps its xmin.
$node->safe_psql('postgres', q{SELECT count(*) FROM eventbus.poll('g', 'x', 100, commit => true)});
$waiter = $node->background_psql('postgres');
$waiter->query_until(qr/waiting/, q{\echo waiting
BEGIN;
SELECT eventbus.wait('g', 'x', '5 minutes') AS woke \gset
\echo done :woke
});
$node->poll_query_until('postgres', $sleeping, '1') or die 'wait() is not sleeping';
is($node->safe_psql('postgres', $sleeping . q{ AND backend_xmin IS NOT NULL}), '1',
	'in a transaction block it keeps the snapshot');
$node->safe_psql('postgres', q{SELECT eventbus.publish('x', '{"n": 2}')});
like($waiter->query_until(qr/done/, ''), qr/done t/, 'and it wakes for a commit');
$waiter->query_safe('COMMIT');
$waiter->quit;

$node->stop;
done_testing();
