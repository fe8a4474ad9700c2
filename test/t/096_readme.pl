# The README's "Getting started" runs as written: its SQL blocks, in order,
# against a fresh server configured as the README's
# shared_preload_libraries section says (database "app"), with the relay
# pointed at a mock Kafka cluster.  Then the claims the blocks make are
# checked: the first event's partition and position, what the consumer
# groups did, and what reached Kafka.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $readme = "$ENV{EB_SRC}/README.md";
open(my $fh, '<', $readme) or die "cannot open $readme: $!";
my $text = do { local $/; <$fh> };
close($fh);

my ($section) = $text =~ /^## Getting started\n(.*?)^## /ms
  or die 'README has no "Getting started" section';
my @blocks = $section =~ /^```sql\n(.*?)^```\n/msg;
is(scalar(@blocks), 3, 'three SQL blocks: topics, groups, relay');

my $kafka = RelayTest::MockKafka->start('--topic', 'orders:3', '--topic', 'invoices:1');
my $node = RelayTest::relay_node('readme', database => 'app',
	bootstrap => $kafka->bootstrap);
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');

# Each block as a script, stopping at the first error, as a user pasting it
# into psql would notice.
sub run_block
{
	my ($i) = @_;
	my ($rc, $out, $err) = $node->psql('app', $blocks[$i],
		extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
	is($rc, 0, "README block " . ($i + 1) . " runs without error")
	  or diag("stdout:\n$out\nstderr:\n$err");
	return $out;
}

run_block(0);
is($node->safe_psql('app', 'SELECT eventbus.partition_for_key(\'customer-7\', 3)'),
	'1', "customer-7 maps to partition 1, as the README's output says");
is($node->safe_psql('app', 'SELECT count(*) FROM eventbus.read(\'orders\', 1)'),
	'2', 'partition 1 holds orders 42 and 44');

run_block(1);
is($node->safe_psql('app', 'SELECT count(*), sum(amount) FROM invoices'),
	'3|118.75', 'billing invoiced the three orders once');
is( $node->safe_psql(
		'app',
		"SELECT committed_position FROM eventbus.consumer_lag
		  WHERE group_name = 'shipping' AND partition = 1"),
	'1',
	'the worker committed what it was handed in partition 1');

# The relay block needs the relay's slot, which the relay worker creates once
# the extension exists.
ok(RelayTest::wait_relay_running($node, 'app'), 'the relay runs in app');
run_block(2);
my $msgs = RelayTest::wait_for_kafka($kafka->bootstrap, 'invoices', 1);
is(scalar(@$msgs), 1, 'the outbox message reached Kafka');
is($msgs->[0]{value}, '{"invoice": 7}', 'with its value');
is($msgs->[0]{key}, 'customer-7', 'and its key');

$node->stop;
$kafka->stop;
done_testing();
