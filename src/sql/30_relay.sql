-- Kafka relay and outbox.

-- The relay's output plugin finds the segment tables it relays through this
-- registry, by OID, as of each decoded transaction (historic snapshot).
ALTER TABLE eventbus.segment SET (user_catalog_table = true);

-- The key that authenticates outbox messages (HMAC-SHA256): 32 random bytes
-- per database, made here.  Readable by superusers and the extension owner
-- only; eventbus.outbox() reads it in C, so its callers need no right on it.
-- Not dumped: a restored database gets a key of its own.
CREATE TABLE eventbus.relay_key (
    key bytea NOT NULL CHECK (pg_catalog.length(key) = 32)
) WITH (user_catalog_table = true);
REVOKE ALL ON eventbus.relay_key FROM PUBLIC;
INSERT INTO eventbus.relay_key
SELECT pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) || pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
COMMENT ON TABLE eventbus.relay_key IS
  'The key that authenticates outbox messages in WAL (internal, secret). The relay skips outbox messages whose code does not verify.';

CREATE FUNCTION eventbus.relay_topic(topic text, kafka_topic text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_relay_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_topic(text, text) IS
  'Relays the events of a topic committed from now on to a Kafka topic (default: the same name). Topic owner only.';

CREATE FUNCTION eventbus.stop_relay(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_stop_relay'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.stop_relay(text) IS
  'Stops relaying a topic: events committed from now on are not sent to Kafka. Topic owner only.';

CREATE FUNCTION eventbus.outbox(kafka_topic text, value jsonb, key text DEFAULT NULL,
                                headers jsonb DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'eb_outbox'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.outbox(text, jsonb, text, jsonb) IS
  'Sends a message to a Kafka topic if and only if the current transaction commits, in commit order; nothing is stored in a table (an authenticated logical decoding message). Returns its event id. Grant EXECUTE to the roles that may send.';
REVOKE ALL ON FUNCTION eventbus.outbox(text, jsonb, text, jsonb) FROM PUBLIC;

CREATE FUNCTION eventbus.relay_stats(
    OUT state text, OUT worker_pid integer, OUT slot_name text,
    OUT events_relayed bigint, OUT bytes_relayed bigint, OUT messages_in_flight bigint,
    OUT outbox_backlog bigint, OUT latency_p50_ms double precision,
    OUT latency_p99_ms double precision, OUT last_error text,
    OUT last_error_at timestamptz, OUT last_ack_at timestamptz, OUT started_at timestamptz,
    OUT skipped bigint, OUT last_skipped_lsn pg_lsn, OUT last_skip_reason text)
RETURNS record
AS 'MODULE_PATHNAME', 'eb_relay_stats'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_stats() IS
  'Counters of the relay worker since the server started (see the relay_status view).';

CREATE FUNCTION eventbus.relay_backlog(OUT topic text, OUT kafka_topic text, OUT backlog bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_relay_backlog'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_backlog() IS
  'For each relayed topic, events published but not yet acknowledged by Kafka (NULL until the relay acknowledged an event of the topic since the server started).';

CREATE VIEW eventbus.relay_status AS
SELECT s.state,
       s.worker_pid,
       s.slot_name,
       r.confirmed_flush_lsn AS confirmed_lsn,
       CASE WHEN r.restart_lsn IS NOT NULL
            THEN pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.restart_lsn)::bigint
       END AS wal_retained_bytes,
       s.events_relayed,
       s.bytes_relayed,
       s.messages_in_flight,
       s.outbox_backlog,
       s.latency_p50_ms,
       s.latency_p99_ms,
       s.last_error,
       s.last_error_at,
       s.last_ack_at,
       s.started_at,
       s.skipped,
       s.last_skipped_lsn,
       s.last_skip_reason,
       (SELECT jsonb_object_agg(b.topic, b.backlog) FROM eventbus.relay_backlog() b) AS backlog
FROM eventbus.relay_stats() s
LEFT JOIN pg_catalog.pg_replication_slots r ON r.slot_name = s.slot_name;
COMMENT ON VIEW eventbus.relay_status IS
  'Health of the Kafka relay: state, slot, confirmed LSN, WAL retained, events and bytes relayed, messages in flight, outbox backlog, commit-to-acknowledgement latency, last error, last acknowledgement, content skipped because it could not be relayed (count, last LSN, reason), backlog per relayed topic.';
GRANT SELECT ON eventbus.relay_status TO PUBLIC;
