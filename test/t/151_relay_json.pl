# The relay writes an event's value as jsonb's own text form, byte for
# byte (value::text): the relay serializes the stored jsonb itself
# (src/relay_json.c), so this compares, for values chosen to reach every
# case of the stored format, each Kafka message's value with value::text
# of its event:
#
#  - scalars at the top (string, number, true, false, null), empty
#    containers, nesting;
#  - objects and arrays of more than 32 children (every 32nd child's
#    JEntry holds an offset instead of a length), keys of every length
#    (jsonb sorts them by length first);
#  - strings with every character JSON escapes (", \, \b \f \n \r \t, the
#    other control characters as \u00xx), non-ASCII text, DEL;
#  - numbers: integers, decimals, negative, 1e300 (printed in full), many
#    decimals, numbers inside arrays after strings (alignment padding).
#
# Builds with assertions also compare every relayed value with
# JsonbToCString inside the relay.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $db = 'postgres';
my $mock = RelayTest::MockKafka->start('--topic', 'json:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('relay_json', bootstrap => $bootstrap, start => 1);

$node->safe_psql($db, q{
SELECT eventbus.create_topic('json', 1);
SELECT eventbus.relay_topic('json');
});

my @values = (
	q{'"text"'},
	q{'12.50'},
	q{'-0.000001'},
	q{'true'},
	q{'false'},
	q{'null'},
	q{'{}'},
	q{'[]'},
	q{'[[], {}, [[]], {"a": {}}]'},
	q{'{"a": 1, "bb": [1, "x", 2.5, null, true, false], "c": {"d": {"e": [{"f": "g"}]}}}'},
	q{(SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 100) i)},
	q{(SELECT jsonb_object_agg(repeat('k', i), repeat('v', i)) FROM generate_series(1, 70) i)},
	q{(SELECT jsonb_agg(CASE WHEN i % 3 = 0 THEN to_jsonb(i) WHEN i % 3 = 1 THEN to_jsonb('s' || i) ELSE jsonb_build_array(i, 'x') END) FROM generate_series(1, 100) i)},
	q{(SELECT to_jsonb(string_agg(chr(i), '')) FROM generate_series(1, 127) i)},
	q{jsonb_build_object('esc', E'quote " backslash \\\\ \b \f \n \r \t end', E'key\n"', E'\x01\x1f')},
	q{jsonb_build_object('utf8', 'caf' || chr(233) || ' ' || chr(8364) || ' ' || chr(128512), 'del', chr(127))},
	q{jsonb_build_array(1e300, 123456789012345678901234567890, 0.1234567890123456789012345678901234567890, -5, 0, 'x', 7)},
	q{'{"nested": [1, [2, [3, [4, [5, {"six": [6]}]]]]]}'},
	q{jsonb_build_object('pad', repeat('x', 5000), 'n', 1)},
);

foreach my $i (0 .. $#values)
{
	$node->safe_psql($db,
		"SELECT eventbus.publish('json', $values[$i], headers => jsonb_build_object('n', '$i'))");
}

my $msgs = wait_for_kafka($bootstrap, 'json', scalar(@values), 30);
is(scalar(@$msgs), scalar(@values), 'every event reached Kafka');

my %want;
foreach my $row (split /\x1e/,
	$node->safe_psql($db,
		q{SELECT string_agg(headers->>'n' || chr(31) || value::text, chr(30) ORDER BY position) FROM eventbus_data.json}))
{
	my ($n, $text) = split /\x1f/, $row, 2;
	$want{$n} = $text;
}
is(scalar(keys %want), scalar(@values), 'every event is in the topic');

foreach my $m (@$msgs)
{
	my $n = $m->{headers}{n};
	is($m->{value}, $want{$n}, "value $n ($values[$n]) is sent as value::text");
}

ok(!$node->log_contains(qr/TRAP:|terminated by signal|PANIC|exited with exit code/),
	'no crash or worker exit in the server log');
$node->stop;
$mock->stop;
done_testing();
