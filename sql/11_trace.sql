-- W3C trace context: traceparent/tracestate headers of an event, or the
-- settings eventbus.traceparent/eventbus.tracestate (SET LOCAL), checked
-- against the W3C format, stored in the event's headers, returned by poll.

SELECT eventbus.create_topic('traced', 1);
SELECT eventbus.create_group('tracer', 'traced', start_at => 'earliest');

-- valid headers are stored as given
SELECT position FROM eventbus.publish('traced', '{"n": 1}', headers =>
  '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7", "other": "x"}');
-- a later version may carry more after the flags
SELECT position FROM eventbus.publish('traced', '{"n": 2}', headers =>
  '{"traceparent": "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"}');
-- tracestate: empty members, tabs, multi-tenant keys, 32 members
SELECT position FROM eventbus.publish('traced', '{"n": 3}', headers => jsonb_build_object(
  'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00',
  'tracestate', E'a=1,,\tt@sys=v w ,' || (SELECT string_agg('k' || i || '=' || i, ',') FROM generate_series(1, 30) i)));
-- JSON null traceparent: no trace context, the setting stays out
BEGIN;
SET LOCAL eventbus.traceparent = '00-11111111111111111111111111111111-2222222222222222-01';
SELECT position FROM eventbus.publish('traced', '{"n": 4}', headers => '{"traceparent": null}');
COMMIT;

-- invalid traceparent headers: each refused with its reason
\set VERBOSITY default
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bx-01"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": "0"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": ""}');

-- invalid tracestate headers
SELECT eventbus.publish('traced', '{}', headers => '{"tracestate": "a=1"}');
SELECT eventbus.publish('traced', '{}', headers => '{"traceparent": null, "tracestate": "a=1"}');
SELECT eventbus.publish('traced', '{}', headers =>
  '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "Upper=1"}');
SELECT eventbus.publish('traced', '{}', headers =>
  '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=1,novalue"}');
SELECT eventbus.publish('traced', '{}', headers =>
  '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=1,a=2"}');
SELECT eventbus.publish('traced', '{}', headers =>
  '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=x=y"}');
SELECT eventbus.publish('traced', '{}', headers =>
  '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a="}');
SELECT eventbus.publish('traced', '{}', headers =>
  '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "t@Sys=1"}');
SELECT eventbus.publish('traced', '{}', headers => jsonb_build_object(
  'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  'tracestate', (SELECT string_agg('k' || i || '=' || i, ',') FROM generate_series(1, 33) i)));
SELECT eventbus.publish('traced', '{}', headers => jsonb_build_object(
  'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  'tracestate', 'a=' || repeat('v', 257)));
-- a refused event in a batch fails the batch
SELECT count(*) FROM eventbus.publish_batch('traced', ARRAY['{}', '{}']::jsonb[],
  headers => ARRAY['{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}',
                   '{"traceparent": "bogus"}']::jsonb[]);

-- the settings: checked when set (SET, SET LOCAL, set_config)
SET eventbus.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7';
SET eventbus.traceparent = '00-00000000000000000000000000000000-00f067aa0ba902b7-01';
SET eventbus.tracestate = 'a=1,a=2';
SELECT set_config('eventbus.traceparent', 'nope', true);
\set VERBOSITY terse

-- the settings apply to events without a traceparent header, in publish
-- and publish_batch, with the event's other headers kept
BEGIN;
SET LOCAL eventbus.traceparent = '00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01';
SET LOCAL eventbus.tracestate = 'vendor=setting';
SELECT position FROM eventbus.publish('traced', '{"n": 5}');
SELECT position FROM eventbus.publish('traced', '{"n": 6}', headers => '{"other": "y", "tracestate": null}');
-- the event's own traceparent beats the settings (and its tracestate goes with it)
SELECT position FROM eventbus.publish('traced', '{"n": 7}', headers =>
  '{"traceparent": "00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-00"}');
SELECT count(*) FROM eventbus.publish_batch('traced', ARRAY['{"n": 8}', '{"n": 9}']::jsonb[],
  headers => ARRAY[NULL, '{"traceparent": "00-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-ffffffffffffffff-01"}']::jsonb[]);
COMMIT;

-- SET LOCAL ends with its transaction; an empty setting is no setting;
-- eventbus.tracestate alone is not used
SHOW eventbus.traceparent;
SELECT position FROM eventbus.publish('traced', '{"n": 10}');
BEGIN;
SET LOCAL eventbus.traceparent = '';
SET LOCAL eventbus.tracestate = 'lonely=1';
SELECT position FROM eventbus.publish('traced', '{"n": 11}');
COMMIT;

-- what poll returns
SELECT value->>'n' AS n, headers FROM eventbus.poll('tracer', 'traced', 100) ORDER BY position;

-- the settings count towards eventbus.max_event_size like headers
BEGIN;
SET LOCAL eventbus.max_event_size = 1024;
SELECT position FROM eventbus.publish('traced', jsonb_build_object('pad', repeat('x', 960)));
SET LOCAL eventbus.traceparent = '00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01';
SELECT eventbus.publish('traced', jsonb_build_object('pad', repeat('x', 960)));
ROLLBACK;

-- outbox() checks trace context too (the relay is not running here, so a
-- valid call ends at the relay check; an invalid one is refused first)
SELECT eventbus.outbox('kafka-traced', '{}', headers => '{"traceparent": "00-bad"}');

SELECT eventbus.drop_topic('traced', force => true);
