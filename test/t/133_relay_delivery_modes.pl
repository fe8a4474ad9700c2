# eventbus.relay_delivery switched on reload: at_least_once, exactly_once,
# at_least_once again.  Each switch restarts the producer; every event
# arrives once (no failure, so no mode sends anything twice).  In
# exactly_once mode the progress topic gets records of this relay's
# transactional id (eventbus.relay_transactional_id, here set) naming the
# offsets the events got; in at_least_once mode it gets none.  An invalid
# progress topic name is a configuration error that names the setting.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $db = 'postgres';
my $mock = RelayTest::MockKafka->start('--topic', 'ev:2', '--topic', 'progress:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node(
	'modes',
	bootstrap => $bootstrap,
	start => 1,
	conf => "eventbus.relay_delivery = 'at_least_once'\n"
	  . "eventbus.relay_progress_topic = 'progress'\n"
	  . "eventbus.relay_transactional_id = 'modes'\n");
is($node->safe_psql($db, q{SELECT boot_val FROM pg_settings WHERE name = 'eventbus.relay_delivery'}),
	'exactly_once', 'exactly_once is the default delivery mode');
$node->safe_psql($db,
	q{SELECT eventbus.create_topic('ev', 2); SELECT eventbus.relay_topic('ev');});

my $published = 0;
my $oid = $node->safe_psql($db, "SELECT oid FROM pg_database WHERE datname = '$db'");

sub publish_and_check
{
	my ($phase) = @_;
	$node->safe_psql($db,
		"SELECT count(*) FROM eventbus.publish_batch('ev', ARRAY(SELECT jsonb_build_object('phase', '$phase', 'i', i) FROM generate_series(1, 100) i), ARRAY(SELECT 'k' || i FROM generate_series(1, 100) i))"
	);
	$published += 100;
	my $msgs = wait_for_kafka($bootstrap, 'ev', $published);
	my $by = by_event_id($msgs);
	is(scalar(@$msgs), $published, "$phase: every event arrived");
	is(scalar(grep { @{ $by->{$_} } > 1 } keys %$by), 0, "$phase: none twice");
	return $msgs;
}

sub set_delivery
{
	my ($mode) = @_;
	$node->append_conf('postgresql.conf', "eventbus.relay_delivery = '$mode'\n");
	$node->reload;
	ok(poll_until(30, sub { $node->safe_psql($db, 'SHOW eventbus.relay_delivery') eq $mode }),
		"relay_delivery is $mode");
	ok(wait_relay_running($node, $db), "the relay runs ($mode)");
}

publish_and_check('at_least_once');
is(scalar(@{ kafka_read($bootstrap, 'progress') // [] }), 0,
	'at_least_once: no progress records');

set_delivery('exactly_once');
my $msgs = publish_and_check('exactly_once');
my $progress = kafka_read($bootstrap, 'progress') // [];
ok(scalar(@$progress) > 0, 'exactly_once: progress records');
is(scalar(grep { ($_->{key} // '') ne "modes-$oid" } @$progress), 0,
	"every progress record has the key modes-$oid (the transactional id)");
my $v = decode_json($progress->[-1]{value});
like($v->{commit_lsn}, qr{^[0-9A-F]+/[0-9A-F]+$}, 'a progress record names a commit LSN');
is($v->{database_oid}, $oid, 'and the database');
my %in_ranges;
foreach my $p (@$progress)
{
	foreach my $r (@{ decode_json($p->{value})->{offsets} })
	{
		$in_ranges{"$r->[0]/$r->[1]/$_"}++ foreach $r->[2] .. $r->[3];
	}
}
my @eos = grep { decode_json($_->{value})->{phase} eq 'exactly_once' } @$msgs;
is(scalar(grep { !$in_ranges{"ev/$_->{partition}/$_->{offset}"} } @eos), 0,
	'the progress records name the offsets of every event sent in exactly_once mode');

set_delivery('at_least_once');
publish_and_check('at_least_once again');

like(slurp_file($node->logfile),
	qr/exactly-once with transactional.id "modes-$oid": Kafka has every transaction up to commit LSN/,
	'the relay used the configured transactional id');

# An invalid progress topic: a configuration error naming the setting.
$node->append_conf('postgresql.conf',
	"eventbus.relay_delivery = 'exactly_once'\neventbus.relay_progress_topic = 'no good'\n");
$node->reload;
ok( poll_until(
		30,
		sub {
			my $s = relay_status($node, $db);
			$s->{state} eq 'configuration error'
			  && ($s->{last_error} // '') =~ /eventbus.relay_progress_topic "no good" is not a valid Kafka topic name/;
		}),
	'an invalid progress topic is a configuration error');

$node->stop;
$mock->stop;
done_testing();
