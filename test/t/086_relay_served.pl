# outbox() and relay_topic() where nothing would relay raise an error
# naming the cause (issue 9, item 17); no Kafka needed.
#
#  - eventbus.database = 'postgres' and no brokers: in postgres, outbox()
#    fails (the relay has no slot there, so the message would be lost) and
#    relay_topic() works with a NOTICE; in another database both fail,
#    naming eventbus.database.
#  - wal_level = replica (minimal from 19): both fail, naming wal_level.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('served');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.database = 'postgres'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE other');
foreach my $db ('postgres', 'other')
{
	$node->safe_psql($db, q{
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('t');
});
}

my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT eventbus.outbox('k', '{"a": 1}')});
like($err, qr/ERROR:  the Kafka relay has not started in database "postgres"/,
	'outbox() without the relay slot fails');
like($err, qr/would be lost/, '... and says the message would be lost');
($ret, $out, $err) = $node->psql('postgres', q{SELECT eventbus.relay_topic('t')});
is($ret, 0, 'relay_topic() in the served database works before the relay started');
like($err, qr/NOTICE:  the relay has not started in this database yet/, '... with a NOTICE');

($ret, $out, $err) = $node->psql('other', q{SELECT eventbus.outbox('k', '{"a": 1}')});
like($err, qr/ERROR:  the Kafka relay does not serve database "other"/,
	'outbox() in another database fails');
like($err, qr/eventbus\.database/, '... naming eventbus.database');
($ret, $out, $err) = $node->psql('other', q{SELECT eventbus.relay_topic('t')});
like($err, qr/ERROR:  the Kafka relay does not serve database "other"/,
	'relay_topic() in another database fails');
is($node->safe_psql('other', q{SELECT relay_to IS NULL FROM eventbus.topic WHERE topic = 't'}),
	't', '... and records nothing');

# From 19 core turns logical decoding on for a logical slot, so replica is
# enough there (test/t/114_relay_wal_replica.pl) and minimal is what fails.
my ($low, $needed) = $node->pg_version->major >= 19 ? ('minimal', 'replica') : ('replica', 'logical');
$node->append_conf('postgresql.conf', "wal_level = $low\n");
$node->append_conf('postgresql.conf', "max_wal_senders = 0\n") if $low eq 'minimal';
$node->restart;
foreach my $call (q{SELECT eventbus.outbox('k', '{"a": 1}')}, q{SELECT eventbus.relay_topic('t')})
{
	($ret, $out, $err) = $node->psql('postgres', $call);
	like($err, qr/ERROR:  the Kafka relay needs wal_level = $needed/,
		"wal_level = $low: $call fails");
}
ok(!$node->log_contains(qr/terminated by signal|TRAP:|PANIC/), 'no crash in the server log');
$node->stop;
done_testing();
