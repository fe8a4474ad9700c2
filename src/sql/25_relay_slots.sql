-- The relay's replication slots (src/relay_slot.c).

-- Each creation of this database's relay slot, by the relay worker.  A
-- warning is kept when the slot was created anew while relayed topics held
-- events (a slot of this database existed before: a promotion without slot
-- synchronization, or a dropped slot), until resolve_relay_slot_warning().
-- Not dumped: a slot belongs to one cluster.
CREATE TABLE eventbus.relay_slot (
    slot_name   name PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    created_lsn pg_lsn NOT NULL,
    failover    boolean NOT NULL,
    warning     text
);
REVOKE ALL ON eventbus.relay_slot FROM PUBLIC;
GRANT SELECT ON eventbus.relay_slot TO pg_monitor;
COMMENT ON TABLE eventbus.relay_slot IS
  'When the relay created its replication slot in this database (written by the relay): position it started from, whether it is a failover slot, and a warning when it replaced an earlier slot while relayed topics held events that may not have reached Kafka.';

CREATE FUNCTION eventbus.relay_slot_info(
    OUT slot_name text, OUT database_oid oid, OUT database name, OUT active_pid integer,
    OUT restart_lsn pg_lsn, OUT confirmed_lsn pg_lsn, OUT wal_retained_bytes bigint,
    OUT failover boolean, OUT synced boolean, OUT invalidation_reason text,
    OUT orphaned boolean, OUT status text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_relay_slot_info'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_slot_info() IS
  'Every pg_eventbus relay slot of the cluster, in every database (see the relay_slots view). Superusers and pg_monitor only.';
REVOKE ALL ON FUNCTION eventbus.relay_slot_info() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventbus.relay_slot_info() TO pg_monitor;

CREATE VIEW eventbus.relay_slots AS
SELECT i.slot_name,
       i.database,
       i.active_pid,
       i.restart_lsn,
       i.confirmed_lsn,
       i.wal_retained_bytes,
       i.failover,
       i.synced,
       i.invalidation_reason,
       i.orphaned,
       i.status,
       c.created_at,
       c.warning
FROM eventbus.relay_slot_info() i
LEFT JOIN eventbus.relay_slot c ON c.slot_name = i.slot_name
ORDER BY i.slot_name;
COMMENT ON VIEW eventbus.relay_slots IS
  'Every pg_eventbus relay slot of the cluster: its database, the process using it, restart and confirmed LSN, WAL it retains, failover (17+), invalidation reason, whether it is an orphan (no relay will use it: eventbus.database does not list its database, or eventbus.kafka_brokers is empty) and what to do; for this database''s slot, when it was created and any warning. Superusers and pg_monitor only.';
REVOKE ALL ON eventbus.relay_slots FROM PUBLIC;
GRANT SELECT ON eventbus.relay_slots TO pg_monitor;

CREATE FUNCTION eventbus.drop_relay_slot(slot_name name)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_drop_relay_slot'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.drop_relay_slot(name) IS
  'Drops a pg_eventbus relay slot (of any database) that is an orphan or invalidated; refuses a slot in use and the slot of the relay the settings ask for. Not transactional. Superusers only.';
REVOKE ALL ON FUNCTION eventbus.drop_relay_slot(name) FROM PUBLIC;

CREATE FUNCTION eventbus.resolve_relay_slot_warning()
RETURNS boolean
AS 'MODULE_PATHNAME', 'eb_resolve_relay_slot_warning'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.resolve_relay_slot_warning() IS
  'Clears the warning of this database''s relay slot (relay_status.slot_warning) once what Kafka may have missed was sent again; true if there was one. Superusers only.';
REVOKE ALL ON FUNCTION eventbus.resolve_relay_slot_warning() FROM PUBLIC;
