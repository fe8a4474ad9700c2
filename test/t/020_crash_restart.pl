# Crash (immediate stop) and clean restart with producer transactions open.
#
# Positions live in shared memory and are rebuilt from the tables after a
# restart.  This test checks that, after a crash with open producer
# transactions and after a clean restart:
#  - every committed event is still there, read back in position order with
#    the same (partition, position, event_id);
#  - the events of the open transactions are gone;
#  - new events get positions above every committed position of their
#    partition, and end_position continues from there;
#  - reading everything, in one call or page by page across segments, gives
#    each committed event once and in order.
# Before the crash it also checks that an open transaction holds back the
# readers of its partition (invariant 2), including across a segment
# rotation.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'crashdb';
my $topic = 'orders';
my $nparts = 3;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.database = 'postgres'
});
$node->start;

# The background workers serve only database "postgres" (eventbus.database):
# they never maintain this
# database, so segment rotation below happens only when the test asks.
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION pg_eventbus');
$node->safe_psql($db,
	"SELECT eventbus.create_topic('$topic', $nparts, retention => '1 second')");

# ---------------------------------------------------------------------------
# helpers

# Rows "partition|position" from a query returning (partition, position).
sub rows
{
	my ($out) = @_;
	return [ grep { $_ ne '' } split /\n/, $out ];
}

# Publishes committed events; returns their "partition|position|tag" rows.
sub publish_committed
{
	my ($tag, $per_partition) = @_;
	my $out = $node->safe_psql(
		$db, qq{
		SELECT (r).partition, (r).position, t
		FROM (SELECT eventbus.publish('$topic',
		                 jsonb_build_object('tag', '$tag-' || p || '-' || i),
		                 partition => p) AS r,
		             '$tag-' || p || '-' || i AS t
		      FROM generate_series(0, $nparts - 1) p,
		           generate_series(1, $per_partition) i
		      ORDER BY p, i) s
		UNION ALL
		SELECT b.partition, b.position, '$tag-batch-' || b.ord
		FROM eventbus.publish_batch('$topic',
		         ARRAY(SELECT jsonb_build_object('tag', '$tag-batch-' || i)
		               FROM generate_series(1, 5) i),
		         ARRAY(SELECT 'key-$tag-' || i FROM generate_series(1, 5) i),
		         ARRAY(SELECT jsonb_build_object('n', i::text)
		               FROM generate_series(1, 5) i))
		     WITH ORDINALITY AS b(partition, position, duplicate, ord)});
	return rows($out);
}

# Committed events as stored: "partition|position|event_id|tag", sorted.
sub stored_events
{
	return rows(
		$node->safe_psql(
			$db, qq{
		SELECT partition, position, event_id, value->>'tag'
		FROM eventbus_data.$topic ORDER BY partition, position}));
}

# Events as eventbus.read() returns them, partition after partition, each in
# the order read() produced: "partition|position|event_id|tag".
sub read_events
{
	return rows(
		$node->safe_psql(
			$db, qq{
		SELECT e.partition, e.position, e.event_id, e.value->>'tag'
		FROM generate_series(0, $nparts - 1) p,
		     LATERAL eventbus.read('$topic', p, -1, 100000)
		         WITH ORDINALITY AS e(topic, partition, position, event_id,
		                              key, value, headers, created_at, ord)
		ORDER BY p, e.ord}));
}

# The same, reading page by page (after_position = last position read).
sub read_events_paged
{
	my ($page) = @_;
	my @all;
	for my $p (0 .. $nparts - 1)
	{
		my $after = -1;
		for (my $guard = 0; $guard < 10000; $guard++)
		{
			my $got = rows(
				$node->safe_psql(
					$db, qq{
				SELECT partition, position, event_id, value->>'tag'
				FROM eventbus.read('$topic', $p, $after, $page)}));
			last unless @$got;
			push @all, @$got;
			$after = (split /\|/, $got->[-1])[1];
		}
	}
	return \@all;
}

# Highest committed position per partition (-1 if none).
sub max_positions
{
	my ($events) = @_;
	my %max = map { $_ => -1 } 0 .. $nparts - 1;
	for (@$events)
	{
		my ($p, $pos) = split /\|/;
		$max{$p} = $pos if $pos > $max{$p};
	}
	return \%max;
}

# "partition|end_position" per partition.
sub end_positions
{
	my %end;
	for (
		@{
			rows(
				$node->safe_psql(
					$db,
					"SELECT partition, end_position FROM eventbus.topic_partitions('$topic')"
				))
		})
	{
		my ($p, $e) = split /\|/;
		$end{$p} = $e;
	}
	return \%end;
}

# Checks that a list of read rows is in strictly increasing position order
# within each partition and has no duplicate event.
sub check_order
{
	my ($events, $what) = @_;
	my (%last, %seen);
	my $bad = 0;
	for (@$events)
	{
		my ($p, $pos, $id) = split /\|/;
		$bad++ if defined $last{$p} && $pos <= $last{$p};
		$bad++ if $seen{$id}++;
		$last{$p} = $pos;
	}
	is($bad, 0, "$what: positions strictly increasing per partition, no duplicates");
}

# Checks everything that must hold after a restart.  $committed: the events
# stored before it; returns the new list of committed events.
sub check_after_restart
{
	my ($what, $committed, $open_tags) = @_;
	my $max = max_positions($committed);

	is_deeply(stored_events(), $committed,
		"$what: every committed event is stored with the same partition, position and event_id"
	);
	my $read = read_events();
	is_deeply($read, $committed,
		"$what: read() returns every committed event, in position order");
	check_order($read, "$what: read()");
	is_deeply(read_events_paged(2), $committed,
		"$what: reading two events at a time returns the same events");

	my $open_list = join(',', map { "'$_'" } @$open_tags);
	is( $node->safe_psql(
			$db,
			"SELECT count(*) FROM eventbus_data.$topic WHERE value->>'tag' = ANY (ARRAY[$open_list]::text[])"
		),
		'0',
		"$what: events of transactions open at the stop are gone");

	my $end = end_positions();
	for my $p (0 .. $nparts - 1)
	{
		cmp_ok($end->{$p}, '>=', $max->{$p} + 1,
			"$what: end_position of partition $p continues after the highest committed position"
		);
	}

	# New events: explicit partitions, keys, and a batch.
	my $new = publish_committed("$what-new", 2);
	my $reused = 0;
	for (@$new)
	{
		my ($p, $pos) = split /\|/;
		$reused++ if $pos <= $max->{$p};
	}
	is($reused, 0,
		"$what: every new event gets a position above the committed ones of its partition"
	);
	my %new_first;
	for (@$new)
	{
		my ($p, $pos) = split /\|/;
		$new_first{$p} = $pos
		  if !defined $new_first{$p} || $pos < $new_first{$p};
	}
	for my $p (sort keys %new_first)
	{
		cmp_ok($new_first{$p}, '>=', $end->{$p},
			"$what: partition $p hands out positions from end_position on");
	}

	my $after = stored_events();
	is(scalar(@$after), scalar(@$committed) + scalar(@$new),
		"$what: the new events are stored next to the old ones");
	$read = read_events();
	is_deeply($read, $after,
		"$what: read() returns old and new events, in position order");
	check_order($read, "$what: read() after new events");
	return $after;
}

# ---------------------------------------------------------------------------
# Before the crash: committed events in two segments, and three producer
# transactions left open, some in the same partitions.

my @committed_by_publish;
push @committed_by_publish, @{ publish_committed('A', 4) };

my $s1 = $node->background_psql($db);
$s1->query_safe('BEGIN');
my @open1 = split /\n/,
  $s1->query_safe(
	qq{SELECT (eventbus.publish('$topic', '{"tag":"open1-0"}', partition => 0)).position;
	   SELECT (eventbus.publish('$topic', '{"tag":"open1-1"}', partition => 1)).position;}
  );
is(scalar(@open1), 2, 'first open transaction published two events');

# Rotate: the next events go to segment 2, the first open transaction's
# events stay in segment 1.  Then remove the time limit so that nothing is
# dropped.
$node->poll_query_until($db,
	"SELECT count(*) > 0 FROM eventbus.run_maintenance() WHERE topic = '$topic' AND action = 'rotated'"
) or die 'segment rotation did not happen';
$node->safe_psql($db, "SELECT eventbus.alter_topic('$topic', retention => '0')");
is( $node->safe_psql(
		$db,
		"SELECT string_agg(segment || ':' || (activated_at IS NOT NULL), ',' ORDER BY segment) FROM eventbus.segment"
	),
	'1:true,2:true,3:false',
	'segment 2 is current, segment 3 is the spare');

push @committed_by_publish, @{ publish_committed('B', 3) };

my $s2 = $node->background_psql($db);
$s2->query_safe('BEGIN');
$s2->query_safe(
	qq{SELECT eventbus.publish('$topic', '{"tag":"open2-0a"}', partition => 0);
	   SELECT eventbus.publish('$topic', '{"tag":"open2-0b"}', partition => 0);
	   SELECT eventbus.publish('$topic', '{"tag":"open2-2"}', partition => 2);});

my $s3 = $node->background_psql($db);
$s3->query_safe('BEGIN');
$s3->query_safe(
	qq{SELECT eventbus.publish_batch('$topic',
	       ARRAY['{"tag":"open3-b1"}', '{"tag":"open3-b2"}', '{"tag":"open3-b3"}']::jsonb[],
	       ARRAY['key-A-1', 'key-A-2', 'key-A-3']);});

# Committed after the open transactions published: higher positions.
push @committed_by_publish, @{ publish_committed('C', 3) };

# The third transaction also holds the tail of partition 2.
my $open3_tail = $s3->query_safe(
	qq{SELECT (eventbus.publish('$topic', '{"tag":"open3-tail"}', partition => 2)).position}
);

my @open_tags = qw(open1-0 open1-1 open2-0a open2-0b open2-2 open3-b1
  open3-b2 open3-b3 open3-tail);

my $committed = stored_events();
is( scalar(@$committed),
	scalar(@committed_by_publish),
	'every committed publish is stored');
is_deeply(
	[ sort map { join '|', (split /\|/)[ 0, 1, 3 ] } @$committed ],
	[ sort @committed_by_publish ],
	'stored positions are those publish returned');
check_order($committed, 'before the crash: stored events');
my $max_before = max_positions($committed);

# Invariant 2 before the crash: the first open transaction holds back the
# readers of partitions 0 and 1 at its positions (in segment 1), although
# higher positions of those partitions committed (in segment 2).
for my $p (0, 1)
{
	my @expected = grep { (split /\|/)[0] == $p && (split /\|/)[1] < $open1[$p] }
	  @$committed;
	my $got = rows(
		$node->safe_psql(
			$db,
			"SELECT partition, position, event_id, value->>'tag' FROM eventbus.read('$topic', $p, -1, 100000)"
		));
	is_deeply($got, \@expected,
		"before the crash: read() of partition $p stops below the open transaction's position $open1[$p]"
	);
	cmp_ok($max_before->{$p}, '>', $open1[$p],
		"before the crash: partition $p has committed events above the open position"
	);
}
cmp_ok($open3_tail, '>', $max_before->{2},
	'before the crash: an open transaction holds the tail of partition 2');

# ---------------------------------------------------------------------------
# Crash.

$node->stop('immediate');
for my $s ($s1, $s2, $s3)
{
	eval { $s->quit; };
}
$node->start;

my $segments_before = '1:true,2:true,3:false';
is( $node->safe_psql(
		$db,
		"SELECT string_agg(segment || ':' || (activated_at IS NOT NULL), ',' ORDER BY segment) FROM eventbus.segment"
	),
	$segments_before,
	'after the crash: the segments are unchanged');

$committed = check_after_restart('after the crash', $committed, \@open_tags);

# ---------------------------------------------------------------------------
# Clean restart (fast stop) with another open transaction at the tail of a
# partition and one in the middle.

my $s4 = $node->background_psql($db);
$s4->query_safe('BEGIN');
$s4->query_safe(
	qq{SELECT eventbus.publish('$topic', '{"tag":"open4-1"}', partition => 1)});
push @$committed, @{ publish_committed('D', 1) };
$s4->query_safe(
	qq{SELECT eventbus.publish('$topic', '{"tag":"open4-0"}', partition => 0)});
$committed = stored_events();

$node->stop('fast');
eval { $s4->quit; };
$node->start;

$committed = check_after_restart('after a clean restart', $committed,
	[qw(open4-1 open4-0)]);

# A second crash right after the restart, before anything else happened:
# the counters are rebuilt again from the tables.
$node->stop('immediate');
$node->start;
$committed = check_after_restart('after a second crash', $committed, []);

ok( !$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no assertion failure or crashed process in the server log');

$node->stop;
done_testing();
