-- Schema, privileges and views of pg_eventbus.
BEGIN;
SELECT plan(38);

SELECT has_schema('eventbus');
SELECT has_schema('eventbus_data');
SELECT has_table('eventbus', 'topic', 'topic catalog');
SELECT has_table('eventbus', 'segment', 'segment catalog');
SELECT col_type_is('eventbus', 'topic', 'owner', 'regrole', 'topics record their owner');
SELECT col_not_null('eventbus', 'topic', 'owner', 'every topic has an owner');
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
SELECT function_returns('eventbus', 'drop_topic', ARRAY['text', 'boolean', 'boolean'], 'void');

-- functions run with the caller's rights
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'eventbus'::regnamespace AND p.prosecdef$$,
  'no SECURITY DEFINER functions');
-- any SECURITY DEFINER function pins search_path; the check finds one that
-- does not
CREATE FUNCTION eventbus.tap_unpinned() RETURNS integer
LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
CREATE FUNCTION eventbus.tap_pinned() RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS 'SELECT 1';
PREPARE unpinned AS
  SELECT p.oid::regprocedure::text FROM pg_proc p
   WHERE p.pronamespace = 'eventbus'::regnamespace AND p.prosecdef
     AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');
SELECT set_eq('unpinned', ARRAY['eventbus.tap_unpinned()'],
  'the search_path check finds a SECURITY DEFINER function that does not pin it');
DROP FUNCTION eventbus.tap_unpinned();
DROP FUNCTION eventbus.tap_pinned();
SELECT is_empty('unpinned', 'every SECURITY DEFINER function pins search_path');
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
SELECT ok((SELECT 'security_barrier=true' = ANY (c.reloptions) FROM pg_class c
           WHERE c.oid = 'eventbus.topics'::regclass),
  'the topics view is a security barrier: its visibility filter runs first');

-- user data survives pg_dump
SELECT set_eq(
  $$SELECT c::regclass::text FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'pg_eventbus'$$,
  ARRAY['eventbus.topic', 'eventbus.topic_id_seq', 'eventbus.segment',
        'eventbus.consumer_group', 'eventbus.group_id_seq', 'eventbus.group_partition',
        'eventbus.group_retry', 'eventbus.dead_letter', 'eventbus.relay_allowed', 'eventbus.relay_format',
        'eventbus.relay_partitioning', 'eventbus.relay_policy', 'eventbus.relay_dead_letter',
        'eventbus.topic_schema'],
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


-- a topic created by a role: the tables belong to the extension owner, the
-- creator owns the topic and holds SELECT and INSERT with grant option
CREATE ROLE tap_creator;
GRANT CREATE ON SCHEMA eventbus_data TO tap_creator;
SET ROLE tap_creator;
SELECT eventbus.create_topic('tap_owned');
RESET ROLE;
SELECT is((SELECT owner::text FROM eventbus.topic WHERE topic = 'tap_owned'), 'tap_creator',
  'the creator owns the topic');
SELECT table_owner_is('eventbus_data', 'tap_owned',
  (SELECT e.extowner::regrole::name FROM pg_extension e WHERE e.extname = 'pg_eventbus'),
  'the extension owner owns the parent table');
SELECT table_owner_is('eventbus_data', 'tap_owned$1',
  (SELECT e.extowner::regrole::name FROM pg_extension e WHERE e.extname = 'pg_eventbus'),
  'the extension owner owns the segment tables');
SELECT table_privs_are('eventbus_data', 'tap_owned', 'tap_creator', ARRAY['INSERT', 'SELECT'],
  'the creator may publish to and read its topic');
SELECT ok(has_table_privilege('tap_creator', 'eventbus_data.tap_owned', 'INSERT WITH GRANT OPTION')
          AND has_table_privilege('tap_creator', 'eventbus_data.tap_owned', 'SELECT WITH GRANT OPTION'),
  'the creator may grant its topic on');
SELECT table_privs_are('eventbus_data', 'tap_owned$1', 'tap_creator', ARRAY[]::text[],
  'the creator has no privilege on segment tables');

SELECT * FROM finish();
ROLLBACK;
