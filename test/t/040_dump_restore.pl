# pg_dump and restore of a database with topics.
#
# A database with three topics (one with retention, rotated, its first
# segment dropped; one with gaps left by aborted publishes, keys, headers,
# idempotency keys and a large value; one empty) is dumped and restored into
# new databases on the same server, once with pg_dump -Fc | pg_restore and
# once as plain SQL through psql.  Each copy must have the same topics,
# segments (with their start positions) and events (same positions, event
# ids, keys, values, headers, timestamps, segment tables); publishing there
# continues at the right positions, also in a partition whose events were
# all dropped by retention; an idempotency key published before the dump
# still returns the original position.  A topic created by an ordinary role
# keeps its owner and grants: the tables stay the extension owner's, the
# owner can still alter it and grant it on, and its reader can still read.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_eventbus'
wal_level = logical
eventbus.database = 'postgres'
});
$node->start;

# The background workers serve only database "postgres" (eventbus.database),
# which has no topics:
# segment rotation and retention below happen only when the test asks.
my $src = 'src';
$node->safe_psql('postgres', "CREATE DATABASE $src");
$node->safe_psql($src, 'CREATE EXTENSION pg_eventbus');

# A topic name that needs quoting as an identifier.
my $kept = 'Kept.eu-1';

# ---------------------------------------------------------------------------
# Topic with retention: events in segment 1, rotation, segment 1 dropped;
# partition 2 then has no event left, only the start position recorded for
# segment 2.

$node->safe_psql($src,
	"SELECT eventbus.create_topic('$kept', 3, retention => '1 second')");
$node->safe_psql(
	$src, qq{
	SELECT eventbus.publish('$kept', jsonb_build_object('old', i), partition => p)
	FROM generate_series(0, 2) p, generate_series(1, 3 + (p = 2)::int) i});
$node->poll_query_until($src,
	"SELECT count(*) > 0 FROM eventbus.run_maintenance() WHERE topic = '$kept' AND action = 'rotated'"
) or die 'no rotation';
# Segment 2 stays empty, so it does not rotate; segment 1 expires.
$node->poll_query_until($src,
	"SELECT count(*) > 0 FROM eventbus.run_maintenance() WHERE topic = '$kept' AND action = 'dropped' AND segment = 1"
) or die 'segment 1 was not dropped';
$node->safe_psql($src,
	"SELECT eventbus.alter_topic('$kept', retention => '7 days')");
$node->safe_psql(
	$src, qq{
	SELECT eventbus.publish('$kept', jsonb_build_object('new', i), key => 'kk' || i,
	                        partition => p, idempotency_key => 'kept-' || p || '-' || i)
	FROM generate_series(0, 1) p, generate_series(1, 2) i});
is( $node->safe_psql(
		$src,
		"SELECT string_agg(partition || ':' || first_position || '-' || end_position, ',' ORDER BY partition) FROM eventbus.topic_partitions('$kept')"
	),
	'0:3-5,1:3-5,2:4-4',
	'topic with retention: first segment dropped, partition 2 has no event left'
);

# ---------------------------------------------------------------------------
# Topic without retention: keys, headers, idempotency keys, a large value,
# a batch, and gaps from a rolled-back transaction and savepoint.

$node->safe_psql($src, "SELECT eventbus.create_topic('plain', 2)");
$node->safe_psql(
	$src, q{
	SELECT eventbus.publish('plain', '{"n": 1, "text": "caf\u00e9 \u2603"}', key => 'alice',
	                        partition => 0, headers => '{"trace-id": "t-1", "empty": null}');
	SELECT eventbus.publish('plain', '{"n": 2}', partition => 0, idempotency_key => 'order-42');
	SELECT eventbus.publish('plain', '{"n": 3}', partition => 1, idempotency_key => 'order-43',
	                        headers => '{"h": "v"}');
	SELECT eventbus.publish('plain', jsonb_build_object('n', 4, 'big', repeat('x', 100000)),
	                        partition => 1);
	BEGIN;
	SELECT eventbus.publish('plain', '{"n": "aborted"}', partition => 0);
	SELECT eventbus.publish('plain', '{"n": "aborted"}', partition => 1);
	ROLLBACK;
	BEGIN;
	SELECT eventbus.publish('plain', '{"n": 5}', partition => 0);
	SAVEPOINT s;
	SELECT eventbus.publish('plain', '{"n": "rolled back"}', partition => 0);
	ROLLBACK TO SAVEPOINT s;
	SELECT eventbus.publish('plain', '{"n": 6}', partition => 0, key => 'bob');
	COMMIT;
	SELECT eventbus.publish_batch('plain',
	    ARRAY['{"n": 7}', '{"n": 8}', '{"n": 9}']::jsonb[],
	    ARRAY['alice', NULL, 'carol'],
	    ARRAY['{"b": "1"}', NULL, '{"b": "3"}']::jsonb[]);
	});
my $idem42 =
  $node->safe_psql($src,
	"SELECT partition, position FROM eventbus.publish('plain', '{\"n\": \"again\"}', idempotency_key => 'order-42')"
  );
is($idem42, '0|1', 'idempotency key order-42 is at partition 0, position 1');

$node->safe_psql($src, "SELECT eventbus.create_topic('empty', 1)");

# A topic of an ordinary role, granted on to a reader.
$node->safe_psql('postgres', 'CREATE ROLE team_owner; CREATE ROLE team_reader');
$node->safe_psql($src, 'GRANT CREATE ON SCHEMA eventbus_data TO team_owner');
$node->safe_psql(
	$src, q{
	SET ROLE team_owner;
	SELECT eventbus.create_topic('owned');
	SELECT eventbus.publish('owned', '{"o": 1}');
	GRANT SELECT ON eventbus_data.owned TO team_reader;
	});

# ---------------------------------------------------------------------------
# What must survive the dump.

my @topics = ($kept, 'plain', 'empty');

sub state_of
{
	my ($db) = @_;
	my %s;
	$s{topics} = $node->safe_psql(
		$db, q{
		SELECT topic, partitions, retention, end_positions, events, segments, created_at
		FROM eventbus.topics ORDER BY topic});
	$s{topic_rows} = $node->safe_psql(
		$db, q{
		SELECT topic_id, topic, uid, partitions, retention, table_oid::text, created_at
		FROM eventbus.topic ORDER BY topic_id});
	$s{segments} = $node->safe_psql(
		$db, q{
		SELECT t.topic, s.segment, s.table_oid::text, s.created_at, s.activated_at,
		       s.start_positions
		FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id)
		ORDER BY 1, 2});
	$s{owners} = $node->safe_psql($db,
		'SELECT topic, owner FROM eventbus.topic ORDER BY topic');
	$s{acls} = $node->safe_psql(
		$db, q{
		SELECT c.relname, c.relowner::regrole, c.relacl
		FROM pg_class c
		WHERE c.relnamespace = 'eventbus_data'::regnamespace AND c.relkind = 'r'
		ORDER BY 1});
	$s{tables} = $node->safe_psql(
		$db, q{
		SELECT c.relname, i.inhparent::regclass::text
		FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
		WHERE c.relnamespace = 'eventbus_data'::regnamespace AND c.relkind = 'r'
		ORDER BY 1});
	for my $t (@topics)
	{
		$s{"partitions $t"} = $node->safe_psql($db,
			"SELECT * FROM eventbus.topic_partitions('$t') ORDER BY partition");
		$s{"read $t"} = $node->safe_psql(
			$db, qq{
			SELECT e.partition, e.position, e.event_id, e.key, e.value, e.headers,
			       e.created_at, e.ord
			FROM eventbus.topics t,
			     generate_series(0, t.partitions - 1) p,
			     LATERAL eventbus.read(t.topic, p, -1, 100000)
			         WITH ORDINALITY AS e(topic, partition, position, event_id, key,
			                              value, headers, created_at, ord)
			WHERE t.topic = '$t'
			ORDER BY p, e.ord});
		$s{"rows $t"} = $node->safe_psql(
			$db, qq{
			SELECT tableoid::regclass::text, partition, position, event_id,
			       idempotency_key, md5(value::text)
			FROM eventbus_data."$t" ORDER BY partition, position});
	}
	return \%s;
}

my $before = state_of($src);
like($before->{owners}, qr/^owned\|team_owner$/m, 'the topic owner is recorded');
like(
	$before->{acls},
	qr/^owned\|\w+\|\{.*team_owner=a\*r\*\/\w+.*team_reader=r\/team_owner.*\}$/m,
	'the owner holds SELECT and INSERT with grant option, and granted SELECT on'
);
like($before->{"read plain"}, qr/"big"/, 'the large value is read back');
is( scalar(split /\n/, $before->{"read plain"}),
	9, 'topic plain has nine committed events');
like(
	$before->{segments},
	qr/^Kept\.eu-1\|2\|eventbus_data\."Kept\.eu-1\$2"\|.*\|\{3,3,4\}$/m,
	'segment 2 of the topic with retention records its start positions');

# ---------------------------------------------------------------------------
# Dump, restore twice.

my $tmp = PostgreSQL::Test::Utils::tempdir;
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/src.dump", $src ],
	'pg_dump -Fc');
$node->command_ok([ 'pg_dump', '-Fp', '-f', "$tmp/src.sql", $src ],
	'pg_dump -Fp');

$node->safe_psql('postgres', 'CREATE DATABASE dst_custom');
$node->command_ok(
	[
		'pg_restore', '--exit-on-error', '-d', 'dst_custom',
		"$tmp/src.dump"
	],
	'pg_restore into a new database');

$node->safe_psql('postgres', 'CREATE DATABASE dst_plain');
$node->command_ok(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'dst_plain',
		'-f', "$tmp/src.sql"
	],
	'plain dump restored with psql');

# End positions and the positions of partition 0 of topic plain, as dumped.
my %end_before;
for my $t (@topics)
{
	$end_before{$t} = [
		split /\n/,
		$node->safe_psql(
			$src,
			"SELECT end_position FROM eventbus.topic_partitions('$t') ORDER BY partition"
		) ];
}
is(join(',', @{ $end_before{$kept} }), '5,5,4',
	'end positions of the topic with retention');
my $plain0 = $node->safe_psql($src,
	"SELECT string_agg(position::text, ',') FROM eventbus.read('plain', 0)");

# The source keeps working independently.
$node->safe_psql($src,
	"SELECT eventbus.publish('plain', '{\"n\": \"after dump\"}', partition => 0)");

for my $db ('dst_custom', 'dst_plain')
{
	my $after = state_of($db);
	for my $k (sort keys %$before)
	{
		is($after->{$k}, $before->{$k}, "$db: $k identical to the source");
	}

	# The idempotency key published before the dump.
	is( $node->safe_psql(
			$db,
			"SELECT partition, position FROM eventbus.publish('plain', '{\"n\": \"retry\"}', idempotency_key => 'order-42')"
		),
		'0|1',
		"$db: a repeated idempotency key returns the original position");
	is( $node->safe_psql(
			$db,
			"SELECT partition, position FROM eventbus.publish('$kept', '{\"n\": \"retry\"}', idempotency_key => 'kept-1-2')"
		),
		'1|4',
		"$db: an idempotency key in a rotated segment returns the original position"
	);
	is( $node->safe_psql(
			$db,
			"SELECT count(*) FROM eventbus_data.plain WHERE value->>'n' = 'retry'"),
		'0',
		"$db: the repeated idempotency key published nothing");

	# Publishing continues where the source stopped, in every partition.
	for my $t (@topics)
	{
		my $ends = $end_before{$t};
		my $got = $node->safe_psql(
			$db, qq{
			SELECT string_agg((eventbus.publish('$t', jsonb_build_object('restored', p),
			                                    partition => p)).position::text,
			                  ',' ORDER BY p)
			FROM generate_series(0, $#$ends) p});
		is($got, join(',', @$ends),
			"$db: topic $t: the next positions are the end positions before the dump"
		);
	}
	is( $node->safe_psql(
			$db,
			"SELECT string_agg(position::text, ',') FROM eventbus.read('plain', 0)"),
		"$plain0,$end_before{plain}[0]",
		"$db: read() returns the restored events of partition 0 and the new one");
	is( $node->safe_psql(
			$db,
			"SELECT string_agg(partition || ':' || position, ',' ORDER BY partition) FROM eventbus.read('$kept', 2)"
		),
		'2:4',
		"$db: the new event of the emptied partition is readable");

	# The topic of an ordinary role: its reader reads, its owner alters.
	is( $node->safe_psql(
			$db,
			"SET ROLE team_reader; SELECT count(*) FROM eventbus.read('owned', 0)"),
		'1',
		"$db: the owner's grant to a reader survived");
	$node->safe_psql($db,
		"SET ROLE team_owner; SELECT eventbus.alter_topic('owned', partitions => 2)");
	is( $node->safe_psql(
			$db, "SELECT partitions FROM eventbus.topics WHERE topic = 'owned'"),
		'2',
		"$db: the restored topic owner may alter its topic");
	my ($rc, $out, $err) = $node->psql($db,
		"SET ROLE team_owner; ALTER TABLE eventbus_data.owned ADD COLUMN x int");
	like($err, qr/must be owner of table owned/,
		"$db: the restored topic owner still cannot alter the table");

	# Maintenance and topic DDL work on the restored catalog.
	is($node->safe_psql($db, 'SELECT * FROM eventbus.run_maintenance()'),
		'', "$db: maintenance finds nothing to do");
	my $max_id =
	  $node->safe_psql($db, 'SELECT max(topic_id) FROM eventbus.topic');
	$node->safe_psql($db, "SELECT eventbus.create_topic('created.after.restore')");
	cmp_ok(
		$node->safe_psql(
			$db,
			"SELECT topic_id FROM eventbus.topic WHERE topic = 'created.after.restore'"
		),
		'>', $max_id,
		"$db: a new topic gets a new topic id");
	is( $node->safe_psql(
			$db,
			"SELECT partition, position FROM eventbus.publish('created.after.restore', '{}')"),
		'0|0',
		"$db: a new topic starts at position 0");
	$node->safe_psql($db, "SELECT eventbus.drop_topic('empty')");
	is( $node->safe_psql(
			$db,
			"SELECT count(*) FROM pg_class WHERE relnamespace = 'eventbus_data'::regnamespace AND relname LIKE 'empty%'"
		),
		'0',
		"$db: a restored topic can be dropped with its tables");
}

# The source was not affected by the copies.
is( $node->safe_psql(
		$src,
		"SELECT string_agg(end_position::text, ',' ORDER BY partition) FROM eventbus.topic_partitions('plain')"
	),
	join(',', $end_before{plain}[0] + 1, @{ $end_before{plain} }[ 1 .. $#{ $end_before{plain} } ]),
	'the source database continues on its own');

ok( !$node->log_contains(qr/TRAP:|terminated by signal|PANIC/),
	'no assertion failure or crashed process in the server log');

$node->stop;
done_testing();
