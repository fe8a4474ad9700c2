# CloudEvents on the wire and trace context through the relay, against the
# mock Kafka cluster, read back with kcat -J (headers in order, values that
# may contain commas):
#
#  - a topic relayed with format => 'cloudevents' arrives in the
#    CloudEvents Kafka protocol binding, binary content mode: the value is
#    the event's value, the key unchanged, headers ce_specversion 1.0,
#    ce_id the event id, ce_source (default /postgresql/<database>/<topic>,
#    or cloudevents_source), ce_type (the event's "type" header, else the
#    topic), ce_time (created_at, RFC 3339 UTC), ce_dataschema when the
#    event carries eventbus-schema-version, content-type application/json;
#    the event's own headers travel too, except ones that would spoof those
#    attributes (left out and logged), while ce_subject passes;
#  - a topic relayed as 'json' is unchanged: no ce_ headers added, the
#    event's own content-type and ce_ headers as they are;
#  - traceparent/tracestate (from headers or SET LOCAL eventbus.traceparent)
#    arrive as Kafka headers traceparent/tracestate, for outbox() too.

use strict;
use warnings;

use IPC::Run qw(run timeout);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RelayTest;

my $db = 'postgres';
my $tp1 = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
my $tp2 = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

my $mock = RelayTest::MockKafka->start(
	'--topic', 'ce:1', '--topic', 'ce-custom:1',
	'--topic', 'plain:1', '--topic', 'box:1');
my $bootstrap = $mock->bootstrap;
my $node = relay_node('cloudevents', bootstrap => $bootstrap, start => 1);

# Every message of a Kafka topic via kcat -J: [{key, payload, headers
# (name => value), header_list ([name, value]...)}], in offset order.
sub kafka_json
{
	my ($topic, $count) = @_;
	my $msgs = [];
	poll_until(
		30,
		sub {
			my ($out, $err) = ('', '');
			run([ 'kcat', '-C', '-b', $bootstrap, '-t', $topic, '-o', 'beginning', '-e', '-q', '-J' ],
				'<', \undef, '>', \$out, '2>', \$err, timeout(30))
			  or return 0;
			$msgs = [];
			foreach my $line (grep { /\S/ } split /\n/, $out)
			{
				my $m = decode_json($line);
				my @h = @{ $m->{headers} // [] };
				my (@list, %h);
				while (@h)
				{
					my ($n, $v) = splice(@h, 0, 2);
					push @list, [ $n, $v ];
					$h{$n} = $v;
				}
				$m->{header_list} = \@list;
				$m->{headers} = \%h;
				push @$msgs, $m;
			}
			return @$msgs >= $count;
		},
		250);
	return [ sort { $a->{offset} <=> $b->{offset} } @$msgs ];
}

$node->safe_psql(
	$db, q{
SELECT eventbus.create_topic('orders', 1);
SELECT eventbus.create_topic('shop', 1);
SELECT eventbus.create_topic('plainer', 1);
SELECT eventbus.relay_topic('orders', 'ce', format => 'cloudevents');
SELECT eventbus.relay_topic('shop', 'ce-custom', format => 'cloudevents',
                            cloudevents_source => 'https://example.com/shop');
SELECT eventbus.relay_topic('plainer', 'plain');
});
is( $node->safe_psql(
		$db,
		q{SELECT string_agg(t.topic || ':' || f.format || ':' || coalesce(f.cloudevents_source, '-'), ',' ORDER BY t.topic)
		  FROM eventbus.relay_format f JOIN eventbus.topic t USING (topic_id)}),
	'orders:cloudevents:-,plainer:plain:-,shop:cloudevents:https://example.com/shop',
	'relay_format records each topic\'s format and source');

my $log_offset = -s $node->logfile;
my $spoof = encode_json({
	type => 'com.example.order.created',
	traceparent => $tp1,
	tracestate => 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',
	ce_type => 'spoofed.type',
	ce_source => '/spoofed',
	CE_ID => 'spoofed-id',
	ce_specversion => '0.3',
	'content-type' => 'text/plain',
	ce_subject => 'order-42',
	ce_Bad => 'x',
	other => 'kept' });
$node->safe_psql(
	$db, qq{
SELECT eventbus.publish('orders', '{"order": 1}', key => 'customer-7', headers => '$spoof');
BEGIN;
SET LOCAL eventbus.traceparent = '$tp2';
SET LOCAL eventbus.tracestate = 'vendor=v1';
SELECT eventbus.publish('orders', '{"order": 2}');
SELECT eventbus.publish('plainer', '{"plain": 1}', key => 'p', headers => '$spoof');
SELECT eventbus.outbox('box', '{"boxed": 1}');
COMMIT;
SELECT eventbus.publish('shop', '{"shop": 1}');
});

# An event published under a registered schema carries its version
# (header eventbus-schema-version), which becomes ce_dataschema.
$node->safe_psql($db, q{
SELECT eventbus.register_schema('orders', '{"type": "object", "required": ["order"]}');
SELECT eventbus.publish('orders', '{"order": 3}');
SELECT eventbus.drop_schema('orders');
});

my %events = map { my ($n, $id, $ts) = split /\|/; ($n => { id => $id, time => $ts }) } split /\n/,
  $node->safe_psql(
	$db, qq{
SELECT value->>'order', event_id,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM eventbus_data.orders
  UNION ALL
SELECT 's' || (value->>'shop'), event_id,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM eventbus.read('shop', 0)
});
note explain \%events;

# ---------------------------------------------------------------------------
# The CloudEvents topic.

my $ce = kafka_json('ce', 3);
is(scalar(@$ce), 3, 'three messages in the CloudEvents topic');
my ($m1, $m2, $m3) = @$ce;

# the required attributes of every message (CloudEvents 1.0)
foreach my $m (@$ce)
{
	my $h = $m->{headers};
	my @missing = grep { !defined $h->{$_} || $h->{$_} eq '' }
	  qw(ce_specversion ce_id ce_source ce_type);
	is(scalar(@missing), 0, "message $m->{offset} has every required attribute")
	  or diag("missing: @missing");
	is($h->{ce_specversion}, '1.0', "message $m->{offset}: ce_specversion 1.0");
	is($h->{'content-type'}, 'application/json', "message $m->{offset}: content-type application/json");
	is(scalar(grep { $_->[0] =~ /\A(ce_specversion|ce_id|ce_source|ce_type|ce_time|content-type)\z/i } @{ $m->{header_list} }),
		6, "message $m->{offset}: each attribute header once");
	like($h->{ce_time}, qr/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\z/,
		"message $m->{offset}: ce_time is RFC 3339 in UTC");
}

my $h1 = $m1->{headers};
is($m1->{payload}, '{"order": 1}', 'the value is the event\'s value (data)');
is($m1->{key}, 'customer-7', 'the key is unchanged');
is($h1->{ce_id}, $events{1}{id}, 'ce_id is the event id');
is($h1->{ce_time}, $events{1}{time}, 'ce_time is created_at');
is($h1->{ce_source}, '/postgresql/postgres/orders', 'ce_source defaults to /postgresql/<database>/<topic>');
is($h1->{ce_type}, 'com.example.order.created', 'ce_type comes from the event\'s type header');
ok(!defined $h1->{ce_dataschema}, 'no ce_dataschema without a schema version');
is($h1->{ce_subject}, 'order-42', 'the event\'s ce_subject header passes as an attribute');
ok(!grep({ $_->[0] =~ /\A(CE_ID|ce_Bad)\z/ } @{ $m1->{header_list} }),
	'headers that cannot be attributes are left out');
is($h1->{traceparent}, $tp1, 'the event\'s traceparent is a Kafka header');
is($h1->{tracestate}, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7', 'and its tracestate');
is($h1->{other}, 'kept', 'other headers of the event travel');
is($h1->{type}, 'com.example.order.created', 'the type header itself travels too');
is($h1->{'eventbus-event-id'}, $events{1}{id}, 'the eventbus- headers are still there');

my $h2 = $m2->{headers};
is($h2->{ce_type}, 'orders', 'ce_type is the topic without a type header');
is($h2->{ce_id}, $events{2}{id}, 'second event: ce_id');
is($h2->{traceparent}, $tp2, 'SET LOCAL eventbus.traceparent arrives as header traceparent');
is($h2->{tracestate}, 'vendor=v1', 'SET LOCAL eventbus.tracestate arrives as header tracestate');

is($m3->{headers}{'eventbus-schema-version'}, '1', 'the schema version travels as a header');
is($m3->{headers}{ce_dataschema}, 'urn:pg-eventbus:schema:postgres:orders:1',
	'ce_dataschema names the schema version the event carries');
is($m3->{headers}{ce_id}, $events{3}{id}, 'third event: ce_id');

like(log_since($node, $log_offset), qr/left out header "[^"]+" of an event of topic "orders"/,
	'left-out headers are logged');

my $shop = kafka_json('ce-custom', 1);
is($shop->[0]{headers}{ce_source}, 'https://example.com/shop', 'cloudevents_source is ce_source');
is($shop->[0]{headers}{ce_id}, $events{s1}{id}, 'custom source topic: ce_id');

# ---------------------------------------------------------------------------
# The json topic: unchanged.

my $plain = kafka_json('plain', 1);
my $ph = $plain->[0]{headers};
is($plain->[0]{payload}, '{"plain": 1}', 'json topic: the value');
ok(!defined $ph->{ce_id} && !defined $ph->{ce_time},
	'json topic: no CloudEvents attributes added');
is($ph->{ce_specversion}, '0.3', 'json topic: the event\'s own ce_specversion header as it is');
is($ph->{'content-type'}, 'text/plain', 'json topic: the event\'s own content-type header as it is');
is($ph->{ce_type}, 'spoofed.type', 'json topic: the event\'s own ce_type header as it is');
is($ph->{CE_ID}, 'spoofed-id', 'json topic: every header of the event travels');
is($ph->{traceparent}, $tp1, 'json topic: traceparent header');

# ---------------------------------------------------------------------------
# outbox() under SET LOCAL eventbus.traceparent.

my $box = kafka_json('box', 1);
is($box->[0]{headers}{traceparent}, $tp2, 'outbox message: traceparent header from the setting');
is($box->[0]{headers}{tracestate}, 'vendor=v1', 'outbox message: tracestate header from the setting');

# Switching a topic to json again: later events carry no attributes.
$node->safe_psql(
	$db, q{
SELECT eventbus.relay_topic('orders', 'ce', format => 'json');
SELECT eventbus.publish('orders', '{"order": 4}');
});
$ce = kafka_json('ce', 4);
is($ce->[3]{payload}, '{"order": 4}', 'the event after switching to json arrived');
ok(!defined $ce->[3]{headers}{ce_specversion}, 'it carries no CloudEvents attributes');

$mock->stop;
$node->stop;
done_testing();
