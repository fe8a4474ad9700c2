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

-- Which Kafka topics each role may relay into and send outbox messages to,
-- decided by superusers.  Read by relay_topic() and outbox(), and by the
-- relay as of each decoded transaction.
CREATE TABLE eventbus.relay_allowed (
    role        regrole NOT NULL,
    kafka_topic text NOT NULL,
    PRIMARY KEY (role, kafka_topic)
) WITH (user_catalog_table = true);
REVOKE ALL ON eventbus.relay_allowed FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_allowed', '');
COMMENT ON TABLE eventbus.relay_allowed IS
  'Kafka topics a role (and every role with its privileges) may relay topics into and send outbox messages to: an exact name, or a prefix ending in ''*''. Superusers may use any. Change it with allow_relay() and disallow_relay().';

-- How each relayed topic's partitions map to its Kafka topic's, decided by
-- the relay the first time it sends an event of the topic there (or after
-- the topic grew), and kept: the Kafka partition of an event never depends
-- on whether the brokers answered at that moment.
CREATE TABLE eventbus.relay_partitioning (
    topic_id         integer NOT NULL,
    kafka_topic      text NOT NULL,
    local_partitions integer NOT NULL,
    kafka_partitions integer NOT NULL,
    by_partition     boolean NOT NULL,
    decided_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic_id, kafka_topic)
);
REVOKE ALL ON eventbus.relay_partitioning FROM PUBLIC;
GRANT SELECT ON eventbus.relay_partitioning TO pg_monitor;
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_partitioning', '');
COMMENT ON TABLE eventbus.relay_partitioning IS
  'How the relay maps a topic''s partitions to its Kafka topic''s (written by the relay): by_partition, partition p goes to Kafka partition p (the counts were equal when decided); otherwise Kafka''s partitioner picks the partition from the key. Decided once per topic and Kafka topic, again only when the topic grew; delete a row to have it decided again.';

CREATE FUNCTION eventbus.allow_relay(role regrole, kafka_topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_allow_relay'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.allow_relay(regrole, text) IS
  'Allows a role (and the roles with its privileges) to relay topics into, and send outbox messages to, a Kafka topic, or every Kafka topic starting with a prefix given as ''prefix*''. Superusers only.';
REVOKE ALL ON FUNCTION eventbus.allow_relay(regrole, text) FROM PUBLIC;

CREATE FUNCTION eventbus.disallow_relay(role regrole, kafka_topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eb_disallow_relay'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.disallow_relay(regrole, text) IS
  'Removes an entry made by allow_relay(); true if it existed. Events and outbox messages committed afterwards that are no longer allowed are skipped by the relay. Superusers only.';
REVOKE ALL ON FUNCTION eventbus.disallow_relay(regrole, text) FROM PUBLIC;

-- What the relay does with an event of a topic that Kafka refuses for good
-- (too large, topic unknown or not authorized, invalid record): 'stop'
-- (relaying waits, relay_status says which event and why) or 'dead_letter'
-- (recorded in eventbus.relay_dead_letter, relaying goes on).  Read by the
-- relay when such an error happens, so a change applies to a waiting relay.
CREATE TABLE eventbus.relay_policy (
    topic_id integer PRIMARY KEY,
    on_error text NOT NULL CHECK (on_error IN ('stop', 'dead_letter'))
);
REVOKE ALL ON eventbus.relay_policy FROM PUBLIC;
GRANT SELECT ON eventbus.relay_policy TO pg_monitor;
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_policy', '');
COMMENT ON TABLE eventbus.relay_policy IS
  'Per relayed topic, what the relay does with an event Kafka refuses for good: stop (wait) or dead_letter (see relay_dead_letter). Set by relay_topic().';

-- Events Kafka refused for good, of topics relayed with on_error =>
-- 'dead_letter'.  Written by the relay worker, durably, before its slot moves
-- past the event.  The event itself stays in its topic.
CREATE TABLE eventbus.relay_dead_letter (
    topic       text NOT NULL,
    kafka_topic text NOT NULL,
    partition   integer NOT NULL,
    position    bigint NOT NULL,
    event_id    uuid NOT NULL,
    lsn         pg_lsn NOT NULL,
    error       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, lsn)
);
REVOKE ALL ON eventbus.relay_dead_letter FROM PUBLIC;
GRANT SELECT ON eventbus.relay_dead_letter TO pg_monitor;
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_dead_letter', '');
COMMENT ON TABLE eventbus.relay_dead_letter IS
  'Events that Kafka refused for good and the relay passed over (topics relayed with on_error => ''dead_letter''): where the event is (topic, partition, position, event_id), its commit LSN, the Kafka error, when. Superusers and pg_monitor may read it; superusers may delete rows.';

-- How each relayed topic's messages look in Kafka: 'plain' (the event's
-- value, key and headers as they are) or 'cloudevents' (the CloudEvents
-- Kafka protocol binding, binary content mode; cloudevents_source NULL:
-- /postgresql/<database>/<topic>).  Read by the relay's output plugin as of
-- each decoded transaction, like eventbus.topic.
CREATE TABLE eventbus.relay_format (
    topic_id           integer PRIMARY KEY,
    format             text NOT NULL CHECK (format IN ('plain', 'cloudevents')),
    cloudevents_source text
) WITH (user_catalog_table = true);
REVOKE ALL ON eventbus.relay_format FROM PUBLIC;
GRANT SELECT ON eventbus.relay_format TO pg_monitor;
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_format', '');
COMMENT ON TABLE eventbus.relay_format IS
  'Per relayed topic, the form of its Kafka messages: plain (value, key and headers as they are) or cloudevents (CloudEvents Kafka binding, binary content mode, with ce_source cloudevents_source, by default /postgresql/<database>/<topic>). Set by relay_topic(); a topic without a row is relayed plain.';

CREATE FUNCTION eventbus.relay_topic(topic text, kafka_topic text DEFAULT NULL,
                                     start_at text DEFAULT 'now',
                                     format text DEFAULT 'plain',
                                     on_error text DEFAULT 'stop',
                                     cloudevents_source text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_relay_topic_v2'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_topic(text, text, text, text, text, text) IS
  'Relays the events of a topic to a Kafka topic (default: the same name). start_at: ''now'' (events committed after the call), ''earliest'' (first every retained event), a timestamp (first the retained events published at or after it) or ''last_acknowledged'' (first the events after the last position Kafka acknowledged since the server started); earlier events are sent from the topic''s tables, then the relay goes on from WAL with no gap and no duplicate at the seam (see the relay_backfill view). Waits for transactions publishing to the topic to end. format: ''plain'' (also ''json''; the event as it is) or ''cloudevents'' (CloudEvents Kafka binding, binary content mode; cloudevents_source is ce_source, by default /postgresql/<database>/<topic>). on_error: what to do with an event Kafka refuses for good, ''stop'' (relaying waits) or ''dead_letter'' (eventbus.relay_dead_letter, relaying goes on). Topic owner only; the caller and the owner must be allowed to relay into the Kafka topic (allow_relay()).';

-- Backfills of relayed topics (src/relay_backfill.c): per partition, the
-- events the relay sends from the topic's tables, positions next_position
-- up to handover (exclusive); positions at and above handover come from
-- WAL.  Written by relay_topic() and advanced by the relay only after Kafka
-- acknowledged.  handover NULL: not decided yet (the relay had no usable
-- slot when relay_topic() was called; the relay decides it once its slot
-- is ready).  WAL events of positions seam_position up to handover are left
-- to the backfill.
CREATE TABLE eventbus.relay_backfill_progress (
    topic_id       integer NOT NULL,
    partition      integer NOT NULL,
    start_at       text NOT NULL,
    first_position bigint NOT NULL,
    next_position  bigint NOT NULL,
    seam_position  bigint NOT NULL,
    handover       bigint,
    started_at     timestamptz NOT NULL,
    completed_at   timestamptz,
    PRIMARY KEY (topic_id, partition)
);
REVOKE ALL ON eventbus.relay_backfill_progress FROM PUBLIC;
GRANT SELECT ON eventbus.relay_backfill_progress TO pg_monitor;
COMMENT ON TABLE eventbus.relay_backfill_progress IS
  'Backfills of relayed topics, per partition (internal; see the relay_backfill view): the relay sends the retained events of positions next_position up to handover from the topic''s tables, and those at or above handover from WAL. Written by relay_topic(), advanced by the relay after Kafka acknowledged. handover NULL: decided by the relay once its slot is ready.';

CREATE VIEW eventbus.relay_backfill AS
SELECT t.topic,
       b.partition,
       b.start_at,
       b.first_position,
       b.next_position,
       b.handover,
       CASE WHEN b.handover IS NULL THEN NULL
            ELSE GREATEST(b.handover - b.next_position, 0) END AS remaining,
       CASE WHEN b.handover IS NULL THEN 'waiting for the relay''s slot'
            WHEN b.next_position >= b.handover THEN 'done'
            ELSE 'sending' END AS state,
       b.started_at,
       b.completed_at
FROM eventbus.relay_backfill_progress b
JOIN eventbus.topic t USING (topic_id);
COMMENT ON VIEW eventbus.relay_backfill IS
  'Progress of the backfills started by relay_topic() with start_at ''earliest'', a timestamp or ''last_acknowledged'' (or ''now'' before the relay had its slot), per topic and partition: the next position to send from the topic''s tables, the handover (positions at or above it come from WAL; NULL until the relay decided it), positions remaining (an upper bound: rolled-back publishes leave gaps) and state (sending, done, waiting for the relay''s slot). Superusers and pg_monitor only.';
REVOKE ALL ON eventbus.relay_backfill FROM PUBLIC;
GRANT SELECT ON eventbus.relay_backfill TO pg_monitor;

CREATE FUNCTION eventbus.stop_relay(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_stop_relay'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.stop_relay(text) IS
  'Stops relaying a topic: events committed from now on are not sent to Kafka, and its backfill (relay_backfill) ends. Waits for transactions publishing to the topic to end. Topic owner only.';

CREATE FUNCTION eventbus.outbox(kafka_topic text, value jsonb, key text DEFAULT NULL,
                                headers jsonb DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'eb_outbox'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.outbox(text, jsonb, text, jsonb) IS
  'Sends a message to a Kafka topic if and only if the current transaction commits, in commit order; nothing is stored in a table (an authenticated logical decoding message). Returns its event id. Grant EXECUTE to the roles that may send; the caller must be allowed to send to the Kafka topic (allow_relay()).';
REVOKE ALL ON FUNCTION eventbus.outbox(text, jsonb, text, jsonb) FROM PUBLIC;

CREATE FUNCTION eventbus.relay_stats(
    OUT state text, OUT worker_pid integer, OUT slot_name text,
    OUT events_relayed bigint, OUT bytes_relayed bigint, OUT messages_in_flight bigint,
    OUT outbox_backlog bigint, OUT latency_p50_ms double precision,
    OUT latency_p99_ms double precision, OUT last_error text,
    OUT last_error_at timestamptz, OUT last_ack_at timestamptz, OUT started_at timestamptz,
    OUT skipped bigint, OUT last_skipped_lsn pg_lsn, OUT last_skip_reason text,
    OUT last_error_resolved_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'eb_relay_stats'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_stats() IS
  'Counters of the relay worker since the server started (see the relay_status view). Superusers and pg_monitor only.';
REVOKE ALL ON FUNCTION eventbus.relay_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventbus.relay_stats() TO pg_monitor;

CREATE FUNCTION eventbus.relay_backlog(OUT topic text, OUT kafka_topic text, OUT backlog bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_relay_backlog'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_backlog() IS
  'For each relayed topic, positions below the read horizon after the last one Kafka acknowledged, summed over partitions: an upper bound of the events waiting for Kafka (it also counts rolled-back publishes), from shared memory alone (NULL until the relay acknowledged an event of the topic since the server started). Superusers and pg_monitor only.';
REVOKE ALL ON FUNCTION eventbus.relay_backlog() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventbus.relay_backlog() TO pg_monitor;

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
       s.last_error_resolved_at,
       s.last_ack_at,
       s.started_at,
       s.skipped,
       s.last_skipped_lsn,
       s.last_skip_reason,
       (SELECT jsonb_object_agg(b.topic, b.backlog) FROM eventbus.relay_backlog() b) AS backlog,
       rs.failover AS slot_failover,
       rs.invalidation_reason AS slot_invalidation_reason,
       rs.created_at AS slot_created_at,
       rs.warning AS slot_warning,
       (SELECT jsonb_agg(jsonb_build_object(
                   'slot_name', a.slot_name, 'database', a.database, 'active_pid', a.active_pid,
                   'restart_lsn', a.restart_lsn, 'wal_retained_bytes', a.wal_retained_bytes,
                   'invalidation_reason', a.invalidation_reason, 'orphaned', a.orphaned,
                   'status', a.status) ORDER BY a.slot_name)
        FROM eventbus.relay_slots a) AS slots,
       (SELECT jsonb_object_agg(bt.topic, bt.progress)
        FROM (SELECT b.topic,
                     jsonb_build_object(
                       'state', CASE WHEN bool_and(b.state = 'done') THEN 'done'
                                     WHEN bool_or(b.handover IS NULL) THEN 'waiting for the relay''s slot'
                                     ELSE 'sending' END,
                       'remaining', sum(b.remaining),
                       'partitions', count(*),
                       'partitions_done', count(*) FILTER (WHERE b.state = 'done'),
                       'started_at', min(b.started_at),
                       'completed_at', CASE WHEN bool_and(b.state = 'done') THEN max(b.completed_at) END) AS progress
              FROM eventbus.relay_backfill b
              GROUP BY b.topic) bt) AS backfill
FROM eventbus.relay_stats() s
LEFT JOIN pg_catalog.pg_replication_slots r ON r.slot_name = s.slot_name
LEFT JOIN eventbus.relay_slots rs
       ON rs.slot_name = coalesce(s.slot_name,
                                  'pg_eventbus_relay_' || (SELECT d.oid FROM pg_catalog.pg_database d
                                                           WHERE d.datname = pg_catalog.current_database()));
COMMENT ON VIEW eventbus.relay_status IS
  'Health of the Kafka relay: state, slot, confirmed LSN, WAL retained, events and bytes relayed, messages in flight, outbox backlog, commit-to-acknowledgement latency, last error, last acknowledgement, content skipped because it could not be relayed (count, last LSN, reason), backlog per relayed topic; the slot''s failover flag, invalidation reason, creation time and warning (a slot created anew while relayed topics held events), and every pg_eventbus slot of the cluster (slots: database, process, retained WAL, orphaned, status; details in relay_slots), and per topic the progress of a backfill started by relay_topic() (backfill: state, positions remaining, partitions done; per partition in relay_backfill). Superusers and pg_monitor only.';
REVOKE ALL ON eventbus.relay_status FROM PUBLIC;
GRANT SELECT ON eventbus.relay_status TO pg_monitor;
