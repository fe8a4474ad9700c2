-- Schema, privileges and views of pg_eventbus.
BEGIN;
SELECT plan(27);

SELECT has_schema('eventbus');
SELECT has_schema('eventbus_data');
SELECT has_table('eventbus', 'topic', 'topic catalog');
SELECT has_table('eventbus', 'segment', 'segment catalog');
SELECT has_view('eventbus', 'topics', 'topics view');
SELECT columns_are('eventbus', 'topics',
  ARRAY['topic', 'partitions', 'retention', 'end_positions', 'events', 'segments', 'size_bytes', 'created_at', 'relayed_to']);
SELECT has_type('eventbus', 'event_position', 'event_position type');
SELECT has_type('eventbus', 'event', 'event type');

SELECT function_returns('eventbus', 'publish',
  ARRAY['text', 'jsonb', 'text', 'jsonb', 'integer', 'text'], 'eventbus.event_position');
SELECT function_returns('eventbus', 'publish_batch',
  ARRAY['text', 'jsonb[]', 'text[]', 'jsonb[]'], 'setof eventbus.event_position');
SELECT function_returns('eventbus', 'read',
  ARRAY['text', 'integer', 'bigint', 'integer'], 'setof eventbus.event');
SELECT function_returns('eventbus', 'create_topic', ARRAY['text', 'integer', 'interval'], 'void');
SELECT function_returns('eventbus', 'alter_topic', ARRAY['text', 'integer', 'interval'], 'void');
SELECT function_returns('eventbus', 'drop_topic', ARRAY['text'], 'void');

-- functions run with the caller's rights
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace AND p.prosecdef$$,
  'no SECURITY DEFINER functions');
-- the ones that change data are neither parallel safe nor immutable
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace
       AND p.proname IN ('publish', 'publish_batch', 'create_topic', 'alter_topic', 'drop_topic', 'run_maintenance')
       AND (p.proparallel <> 'u' OR p.provolatile <> 'v')$$,
  'writing functions are volatile and parallel unsafe');

-- privileges of PUBLIC
SELECT schema_privs_are('eventbus', 'public', ARRAY['USAGE']);
SELECT schema_privs_are('eventbus_data', 'public', ARRAY['USAGE']);
SELECT table_privs_are('eventbus', 'topic', 'public', ARRAY[]::text[]);
SELECT table_privs_are('eventbus', 'segment', 'public', ARRAY[]::text[]);
SELECT table_privs_are('eventbus', 'topics', 'public', ARRAY['SELECT']);

-- user data survives pg_dump
SELECT set_eq(
  $$SELECT c::regclass::text FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'pg_eventbus'$$,
  ARRAY['eventbus.topic', 'eventbus.topic_id_seq', 'eventbus.segment',
        'eventbus.consumer_group', 'eventbus.group_id_seq', 'eventbus.group_partition',
        'eventbus.group_retry', 'eventbus.relay_allowed'],
  'catalog tables are dumped');

-- a topic's tables
SELECT eventbus.create_topic('tap_topic', 3, retention => '1 day');
SELECT has_table('eventbus_data', 'tap_topic', 'parent table');
SELECT has_table('eventbus_data', 'tap_topic$1', 'first segment');
SELECT has_table('eventbus_data', 'tap_topic$2', 'spare segment');
SELECT col_is_pk('eventbus_data', 'tap_topic$1', ARRAY['partition', 'position'], 'segment key');
SELECT results_eq(
  $$SELECT partitions, retention, end_positions, segments FROM eventbus.topics WHERE topic = 'tap_topic'$$,
  $$VALUES (3, interval '1 day', ARRAY[0, 0, 0]::bigint[], 2)$$,
  'topics view');

SELECT * FROM finish();
ROLLBACK;
