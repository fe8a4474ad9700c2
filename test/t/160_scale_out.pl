# Scale-out through Kafka (docs/scale-out.md): a keyed topic of several
# partitions is relayed to a Kafka topic of as many partitions, and a
# Kafka consumer group reads it there (kcat -G against the mock cluster).
#
#  - eventbus.relay_partitioning maps the topic partition by partition;
#  - every event arrives in the Kafka partition of its local partition
#    (kcat's partition = the eventbus-partition header = the partition
#    eventbus.read() shows it in);
#  - within a Kafka partition, offsets follow local positions, so each
#    key's events come in the order a local consumer group sees them.

use strict;
use warnings;

use IPC::Run qw(run timeout);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $db = 'postgres';
my $parts = 4;
my $nkeys = 12;
my $nevents = 240;

my $mock = RelayTest::MockKafka->start('--topic', "orders:$parts");
my $bootstrap = $mock->bootstrap;
my $node = relay_node('scale_out', bootstrap => $bootstrap, start => 1);

$node->safe_psql(
	$db, qq{
SELECT eventbus.create_topic('orders', $parts);
SELECT eventbus.relay_topic('orders');
});

# Events of every key, interleaved, in transactions of 20: the even
# transactions first, then the odd ones, so that a key's sequence numbers
# are not in position order (what a consumer must follow is the position
# order).
my @sql;
for my $t (0 .. ($nevents / 20) - 1)
{
	my $s = "BEGIN;\n";
	for my $i ($t * 20 .. $t * 20 + 19)
	{
		my $k = 'customer-' . ($i % $nkeys);
		$s .= "SELECT eventbus.publish('orders', '{\"seq\": $i}', key => '$k');\n";
	}
	push @sql, $s . "COMMIT;\n";
}
$node->safe_psql($db, join('', @sql[ grep { $_ % 2 == 0 } 0 .. $#sql ]));
$node->safe_psql($db, join('', @sql[ grep { $_ % 2 == 1 } 0 .. $#sql ]));

# Local view: event id => partition, position, key, seq.
my %local;
foreach my $row (
	split /\n/,
	$node->safe_psql(
		$db, qq{
	SELECT e.event_id, e.partition, e.position, e.key, e.value->>'seq'
	FROM generate_series(0, $parts - 1) p, eventbus.read('orders', p, -1, 1000) e}))
{
	my ($id, $p, $pos, $k, $seq) = split /\|/, $row;
	$local{$id} = { partition => $p, position => $pos, key => $k, seq => $seq };
}
is(scalar(keys %local), $nevents, "$nevents events published locally");

my $msgs = wait_for_kafka($bootstrap, 'orders', $nevents, 60);
cmp_ok(scalar(@$msgs), '>=', $nevents, 'the relay delivered every event to Kafka');
is( $node->safe_psql(
		$db,
		q{SELECT by_partition FROM eventbus.relay_partitioning r JOIN eventbus.topic t USING (topic_id)
		  WHERE t.topic = 'orders' AND r.kafka_topic = 'orders'}),
	't',
	'eventbus.relay_partitioning maps orders partition by partition');

# ---------------------------------------------------------------------------
# A Kafka consumer group reads the topic.

# kcat's balanced consumer (-G); it exits once every assigned partition
# reached its end (-e).  Fields as in RelayTest::kafka_read.
sub kcat_group
{
	my ($group) = @_;
	my ($out, $err) = ('', '');
	my $fmt = '%p\x1f%o\x1f%k\x1f%h\x1f%s\x1e';
	my $ok = eval {
		run([
				'kcat', '-b', $bootstrap, '-G', $group,
				'-X', 'auto.offset.reset=earliest', '-e', '-q', '-f', $fmt,
				'orders'
			],
			'<', \undef, '>', \$out, '2>', \$err,
			timeout(60));
	};
	note "kcat -G $group: " . ($ok ? 'done' : "failed ($?): $err " . ($@ // ''));
	my @got;
	foreach my $rec (split /\x1e/, $out)
	{
		my ($p, $o, $k, $h, $v) = split /\x1f/, $rec, 5;
		next unless defined $v;
		my ($id) = $h =~ /(?:^|,)eventbus-event-id=([^,]*)/;
		my ($hp) = $h =~ /(?:^|,)eventbus-partition=([^,]*)/;
		push @got,
		  {
			partition => $p,
			offset => $o,
			key => $k,
			id => $id // '',
			header_partition => $hp // '',
			value => $v
		  };
	}
	return \@got;
}

my $got = kcat_group('scale_out_readers');
my %seen;
$seen{ $_->{id} }++ foreach @$got;
is(scalar(grep { $local{$_} } keys %seen),
	$nevents, 'the consumer group (kcat -G) received every event');
is(scalar(grep { !$local{$_} } keys %seen), 0, '... and nothing else');

my @wrong = grep {
	!$local{ $_->{id} }
	  || $_->{partition} ne $local{ $_->{id} }{partition}
	  || $_->{header_partition} ne $local{ $_->{id} }{partition}
	  || $_->{key} ne $local{ $_->{id} }{key}
} @$got;
is(scalar(@wrong), 0,
	'each event is in the Kafka partition of its local partition, with its key')
  or diag(join(', ', map { "$_->{id} in $_->{partition}" } @wrong[ 0 .. ($#wrong < 5 ? $#wrong : 5) ]));

# Order: by Kafka offset within a partition, the local positions (first
# copy of each event) increase; each key's events come in local position
# order, that is in the order a local consumer group sees them.
my (%last_pos, %first, %kafka_order, %local_order);
my $disorder = 0;
foreach my $m (sort { $a->{partition} <=> $b->{partition} || $a->{offset} <=> $b->{offset} } @$got)
{
	next if $first{ $m->{id} }++ || !$local{ $m->{id} };
	my $e = $local{ $m->{id} };
	$disorder++
	  if defined $last_pos{ $m->{partition} } && $e->{position} <= $last_pos{ $m->{partition} };
	$last_pos{ $m->{partition} } = $e->{position};
	push @{ $kafka_order{ $e->{key} } }, $e->{seq};
}
is($disorder, 0, 'Kafka offsets follow local positions in every partition');
foreach my $id (sort { $local{$a}{partition} <=> $local{$b}{partition}
		  || $local{$a}{position} <=> $local{$b}{position} } keys %local)
{
	push @{ $local_order{ $local{$id}{key} } }, $local{$id}{seq};
}
is(scalar(keys %kafka_order), $nkeys, "all $nkeys keys were read");
is_deeply(\%kafka_order, \%local_order,
	'every key\'s events come from Kafka in the order of their local positions');
isnt(join(',', @{ $local_order{'customer-0'} }),
	join(',', sort { $a <=> $b } @{ $local_order{'customer-0'} }),
	'(position order is not the publishing sequence here, so the check means something)');

# The group committed its offsets: a second run of the same group reads
# nothing new.
my $again = kcat_group('scale_out_readers');
is(scalar(@$again), 0, 'the group\'s committed offsets: a second run reads nothing');

$mock->stop;
ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no crash in the server log');
$node->stop;
done_testing();
