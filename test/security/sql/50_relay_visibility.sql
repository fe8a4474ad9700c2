-- Issue 9, item 4 (relay): the relay's status, counters and backlog are for
-- superusers and pg_monitor only; its key and allow-list for superusers.
CREATE ROLE eb_watcher;
GRANT pg_monitor TO eb_watcher;

SET ROLE eb_nobody;
SELECT state FROM eventbus.relay_status;
SELECT state FROM eventbus.relay_stats();
SELECT * FROM eventbus.relay_backlog();
SELECT * FROM eventbus.relay_key;
SELECT * FROM eventbus.relay_allowed;
RESET ROLE;

-- the attacker owns a schema and topics, and still sees nothing more
SET ROLE eb_attacker;
SELECT state FROM eventbus.relay_status;
SELECT * FROM eventbus.relay_key;
RESET ROLE;

-- the relay's slots (issue 10): listing them is for pg_monitor, dropping
-- one or clearing a slot warning for superusers, whatever the grants say
SET ROLE eb_attacker;
SELECT * FROM eventbus.relay_slots;
SELECT * FROM eventbus.relay_slot;
SELECT eventbus.drop_relay_slot('pg_eventbus_relay_1');
SELECT eventbus.resolve_relay_slot_warning();
RESET ROLE;
GRANT EXECUTE ON FUNCTION eventbus.drop_relay_slot(name) TO eb_watcher;
SET ROLE eb_watcher;
SELECT eventbus.drop_relay_slot('pg_eventbus_relay_1');
SELECT count(*) >= 0 FROM eventbus.relay_slots;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION eventbus.drop_relay_slot(name) FROM eb_watcher;

-- a member of pg_monitor sees the status, not the key
SET ROLE eb_watcher;
SELECT state, worker_pid, skipped, last_error FROM eventbus.relay_status;
SELECT count(*) FROM eventbus.relay_backlog();
SELECT * FROM eventbus.relay_key;
RESET ROLE;

-- what PUBLIC may use of the relay: nothing but stop_relay/relay_topic,
-- which check topic ownership and the allow-list themselves
SELECT p.proname
FROM pg_proc p
WHERE p.pronamespace = 'eventbus'::regnamespace
  AND (p.proname LIKE '%relay%' OR p.proname = 'outbox')
  AND has_function_privilege('eb_nobody', p.oid, 'EXECUTE')
ORDER BY 1;
SELECT c.relname
FROM pg_class c
WHERE c.relnamespace = 'eventbus'::regnamespace
  AND c.relname LIKE 'relay%'
  AND has_table_privilege('eb_nobody', c.oid, 'SELECT')
ORDER BY 1;
DROP ROLE eb_watcher;
