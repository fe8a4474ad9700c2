-- pg_eventbus update from 0.1.0 to 0.2.0.
--
-- After this script the extension's objects equal those of a fresh 0.2.0
-- install (test/t/100_upgrade.pl compares the two with pg_dump).

\echo Use "ALTER EXTENSION pg_eventbus UPDATE TO '0.2.0'" to load this file. \quit

-- The relay's per-topic settings and records are dumped with the database.
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_partitioning', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_policy', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_dead_letter', '');

-- CloudEvents: the form of each relayed topic's messages.
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

-- relay_topic() gains start_at, format and cloudevents_source; on_error
-- moves behind them (DESIGN's order).
DROP FUNCTION eventbus.relay_topic(text, text, text);
CREATE FUNCTION eventbus.relay_topic(topic text, kafka_topic text DEFAULT NULL,
                                     start_at text DEFAULT 'now',
                                     format text DEFAULT 'plain',
                                     on_error text DEFAULT 'stop',
                                     cloudevents_source text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_relay_topic_v2'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_topic(text, text, text, text, text, text) IS
  'Relays the events of a topic committed from now on (start_at ''now'', the only value so far) to a Kafka topic (default: the same name). format: ''plain'' (also ''json''; the event as it is) or ''cloudevents'' (CloudEvents Kafka binding, binary content mode; cloudevents_source is ce_source, by default /postgresql/<database>/<topic>). on_error: what to do with an event Kafka refuses for good, ''stop'' (relaying waits) or ''dead_letter'' (eventbus.relay_dead_letter, relaying goes on). Topic owner only; the caller and the owner must be allowed to relay into the Kafka topic (allow_relay()).';

-- The relay's replication slots: their creation record, every slot of the
-- cluster, dropping orphans.
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

-- relay_status shows the slot's failover flag, invalidation, warning and
-- every pg_eventbus slot.
CREATE OR REPLACE VIEW eventbus.relay_status AS
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
        FROM eventbus.relay_slots a) AS slots
FROM eventbus.relay_stats() s
LEFT JOIN pg_catalog.pg_replication_slots r ON r.slot_name = s.slot_name
LEFT JOIN eventbus.relay_slots rs
       ON rs.slot_name = coalesce(s.slot_name,
                                  'pg_eventbus_relay_' || (SELECT d.oid FROM pg_catalog.pg_database d
                                                           WHERE d.datname = pg_catalog.current_database()));
COMMENT ON VIEW eventbus.relay_status IS
  'Health of the Kafka relay: state, slot, confirmed LSN, WAL retained, events and bytes relayed, messages in flight, outbox backlog, commit-to-acknowledgement latency, last error, last acknowledgement, content skipped because it could not be relayed (count, last LSN, reason), backlog per relayed topic; the slot''s failover flag, invalidation reason, creation time and warning (a slot created anew while relayed topics held events), and every pg_eventbus slot of the cluster (slots: database, process, retained WAL, orphaned, status; details in relay_slots). Superusers and pg_monitor only.';
REVOKE ALL ON eventbus.relay_status FROM PUBLIC;
GRANT SELECT ON eventbus.relay_status TO pg_monitor;

-- Schema compatibility check (docs/schema-compatibility.md).

CREATE FUNCTION eventbus.check_schema_compatibility(new_schema jsonb, old_schema jsonb,
                                                    compatibility text DEFAULT 'backward')
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'eb_check_schema_compatibility'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION eventbus.check_schema_compatibility(jsonb, jsonb, text) IS
  'Why new_schema may not replace old_schema under a compatibility mode (''backward'': the new schema reads every event valid under the old one; ''forward'': the old schema reads every event valid under the new one; ''full'': both; ''none''): one row per reason, no row when the change is compatible. Differences that cannot be decided are reasons too. Reads no table.';

-- Event contracts: JSON Schemas of topics, validated at publish.

-- Every version of every topic's schema.  A version number names one schema
-- of its topic forever: drop_schema() marks the current line of versions
-- dropped (kept for history), and a later registration continues the
-- numbering.  The current schema of a topic is its highest version that is
-- not dropped.
CREATE TABLE eventbus.topic_schema (
    topic_id      integer NOT NULL REFERENCES eventbus.topic ON DELETE CASCADE,
    version       integer NOT NULL CHECK (version > 0),
    schema        jsonb NOT NULL,
    compatibility text NOT NULL CHECK (compatibility IN
                    ('backward', 'forward', 'full', 'backward_transitive',
                     'forward_transitive', 'full_transitive', 'none')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    dropped_at    timestamptz,
    PRIMARY KEY (topic_id, version)
);
REVOKE ALL ON eventbus.topic_schema FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic_schema', '');
COMMENT ON TABLE eventbus.topic_schema IS
  'Versions of the JSON Schema of each topic (internal; use the eventbus.schemas view). compatibility is the mode the version was checked with when registered; dropped_at is set by drop_schema() on every version that was in use. The current schema is the highest version not dropped.';

CREATE FUNCTION eventbus.register_schema(topic text, schema jsonb,
                                         compatibility text DEFAULT 'backward')
RETURNS integer
AS 'MODULE_PATHNAME', 'eb_register_schema'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.register_schema(text, jsonb, text) IS
  'Registers a new version of the topic''s JSON Schema (a subset of draft 2020-12, see docs/schemas.md) and returns its version number; from then on publish() and publish_batch() refuse events that do not conform. The version is checked against the previous ones under compatibility: backward, forward, full, backward_transitive, forward_transitive, full_transitive or none. Registering the current schema again returns its version. Topic owner (or a role with its privileges) only.';

CREATE FUNCTION eventbus.drop_schema(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_drop_schema'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.drop_schema(text) IS
  'Stops validating the topic''s events. Its versions stay in eventbus.schemas, marked dropped; a later register_schema() continues their numbering and is not checked against them. Topic owner (or a role with its privileges) only.';

CREATE VIEW eventbus.schemas WITH (security_barrier) AS
SELECT t.topic,
       s.version,
       s.schema,
       s.compatibility,
       s.created_at,
       s.dropped_at
FROM eventbus.topic_schema s
JOIN eventbus.topic t ON t.topic_id = s.topic_id
-- the topics the caller may see, as in the eventbus.topics view
WHERE pg_catalog.has_table_privilege(t.table_oid, 'SELECT')
   OR pg_catalog.has_table_privilege(t.table_oid, 'INSERT')
   OR pg_catalog.pg_has_role(t.owner, 'USAGE')
   OR pg_catalog.pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW eventbus.schemas IS
  'Schema versions of the topics the caller may read or publish to, whose owner''s privileges it has, or all for members of pg_monitor. dropped_at is set on versions that drop_schema() took out of use; a topic''s current schema is its highest version whose dropped_at is null.';
GRANT SELECT ON eventbus.schemas TO PUBLIC;

-- Metrics and alerts: lag from positions (the library computes it; only the
-- comments change), exact lag on demand, per-topic counters.
COMMENT ON FUNCTION eventbus.group_status(text, text) IS
'Per partition of a group: committed and end positions, lag (positions from the first retained one after the committed position to the end position: an upper bound of the events to consume, as it also counts rolled-back and still-committing publishes; consumer_lag_exact() counts), the creation time of the oldest unconsumed event, last commit, lease, retries waiting, and events retention removed before the group consumed them (lost_events). Costs one index probe per partition. For roles with the privileges of the group''s owner and members of pg_monitor.';
COMMENT ON VIEW eventbus.consumer_lag IS
'Lag of every consumer group on every partition: positions (lag, end_position minus the next position to consume: an upper bound of the events, see consumer_lag_exact()) and time (age of the oldest unconsumed event), last commit, lease holder, retries waiting, events lost to retention. Costs O(partitions), not O(events). Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
COMMENT ON FUNCTION eventbus.relay_backlog() IS
'For each relayed topic, positions below the read horizon after the last one Kafka acknowledged, summed over partitions: an upper bound of the events waiting for Kafka (it also counts rolled-back publishes), from shared memory alone (NULL until the relay acknowledged an event of the topic since the server started). Superusers and pg_monitor only.';

CREATE FUNCTION eventbus.consumer_lag_exact(group_name text, topic text,
    OUT partition integer, OUT committed_position bigint, OUT end_position bigint,
    OUT lag bigint, OUT oldest_unconsumed_at timestamptz, OUT committed_at timestamptz,
    OUT member text, OUT lease_until timestamptz, OUT pending_retries bigint,
    OUT lost_events bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_group_status_exact'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.consumer_lag_exact(text, text) IS
  'As group_status(), with lag counted event by event: the committed events after the committed position that the group can read now (no rolled-back or still-committing positions). Reads every unconsumed event: for checks by hand, not for scraping. For roles with the privileges of the group''s owner and members of pg_monitor.';

CREATE FUNCTION eventbus.topic_stats_counters(
    OUT topic text, OUT published bigint, OUT consumed bigint, OUT dead_lettered bigint,
    OUT relayed bigint, OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_topic_stats'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.topic_stats_counters() IS
  'Per topic, counters kept in shared memory since stats_reset (see the topic_stats view). Topics the caller may read, all for members of pg_monitor.';

CREATE VIEW eventbus.topic_stats AS
SELECT s.topic,
       s.published,
       s.consumed,
       s.dead_lettered,
       s.relayed,
       coalesce(d.rejected, 0) AS relay_rejected,
       s.stats_reset
FROM eventbus.topic_stats_counters() s
LEFT JOIN (SELECT rd.topic, count(*) AS rejected
           FROM eventbus.relay_dead_letter rd GROUP BY rd.topic) d USING (topic);
COMMENT ON VIEW eventbus.topic_stats IS
  'Monotonic counters per topic, for rates: published (events of committed publishes), consumed (positions committed by all groups together, by commit() or poll(commit => true)), dead_lettered (events groups sent to their dead-letter topic), relayed (events Kafka acknowledged); all since stats_reset (server start or first use of the topic; NULL: not used since the server started). relay_rejected: events Kafka refused for good, from eventbus.relay_dead_letter (durable; drops when rows are deleted).';
GRANT SELECT ON eventbus.topic_stats TO PUBLIC;

-- Groups and dead letters ---------------------------------------------------

ALTER TYPE eventbus.event_position ADD ATTRIBUTE duplicate boolean;
COMMENT ON TYPE eventbus.event_position IS 'Where a published event landed; duplicate: publish() found an event with the same idempotency key and returns its position (nothing was published).';

DROP FUNCTION eventbus.drop_topic(text, boolean);
CREATE FUNCTION eventbus.drop_topic(topic text, cascade boolean DEFAULT false,
                                    force boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_drop_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.drop_topic(text, boolean, boolean) IS
  'Drops a topic and all its events. Consumer groups of the topic, groups that dead-letter into it, or a relay to Kafka make it fail with an error listing them, unless force is true: then the groups of the topic are deleted and the relay stops. Objects that depend on its tables (another role''s view over eventbus_data.<topic>, say) make it fail with an error naming them, unless cascade is true: then they are dropped too. Topic owner (or a role with its privileges) only.';

ALTER TABLE eventbus.consumer_group ALTER COLUMN dead_letter_topic DROP NOT NULL;
-- without a default first: a column added with one keeps it as a "missing
-- value", which a fresh install's table does not have
ALTER TABLE eventbus.consumer_group ADD COLUMN paused boolean;
UPDATE eventbus.consumer_group SET paused = false;
ALTER TABLE eventbus.consumer_group ALTER COLUMN paused SET DEFAULT false;
ALTER TABLE eventbus.consumer_group ALTER COLUMN paused SET NOT NULL;
COMMENT ON TABLE eventbus.consumer_group IS
  'Consumer groups (internal; see the eventbus.groups and eventbus.consumer_lag views): one row per group and topic. dead_letter_topic NULL: the group consumes a dead-letter topic and keeps its failed events for redrive only; paused: poll() returns nothing.';

CREATE TABLE eventbus.dead_letter (
    group_id         integer NOT NULL REFERENCES eventbus.consumer_group ON DELETE CASCADE,
    partition        integer NOT NULL,
    position         bigint NOT NULL,
    attempts         integer NOT NULL,
    reason           text,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    dlq_topic        text,
    dlq_partition    integer,
    dlq_position     bigint,
    PRIMARY KEY (group_id, partition, position)
);
COMMENT ON TABLE eventbus.dead_letter IS
  'Events a group dead-lettered (internal): the source partition and position, and where the copy went (dlq_topic NULL: the group has no dead-letter topic). redrive() moves them back to the group as retries, purge_dead_letters() forgets them.';

CREATE TABLE eventbus.group_member (
    group_id   integer NOT NULL REFERENCES eventbus.consumer_group ON DELETE CASCADE,
    member     text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (group_id, member)
);
COMMENT ON TABLE eventbus.group_member IS
  'Leased members of each group (internal): a member counts until expires_at, the end of the lease of its last poll; partitions are shared evenly among the members that count.';

SELECT pg_catalog.pg_extension_config_dump('eventbus.dead_letter', '');

COMMENT ON FUNCTION eventbus.create_group(text, text, text, integer, text) IS
  'Creates a consumer group on a topic, starting at ''earliest'', ''latest'' or a timestamp. After max_attempts deliveries a nacked event goes to dead_letter_topic (default <topic>.dlq, created for the group''s owner when the first event is dead-lettered; a group on a dead-letter topic has none and keeps its failed events for redrive). Needs SELECT on the topic.';

CREATE FUNCTION eventbus.commit(group_name text, topic text, member text)
RETURNS integer
AS 'MODULE_PATHNAME', 'eb_commit_member'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.commit(text, text, text) IS
  'Commits everything handed to a leased member in this session, on every partition it holds (including retries delivered to it). Returns the number of partitions committed.';

CREATE FUNCTION eventbus.pause_group(group_name text, topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_pause_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.pause_group(text, text) IS
  'Pauses a group: poll() returns nothing and wait() does not return true until resume_group(). Positions, leases and retries are kept. Group owner only.';

CREATE FUNCTION eventbus.resume_group(group_name text, topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_resume_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.resume_group(text, text) IS
  'Resumes a paused group. Group owner only.';

CREATE FUNCTION eventbus.redrive(group_name text, topic text, max_events integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eb_redrive'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.redrive(text, text, integer) IS
  'Moves up to max_events (NULL: all) of a group''s dead letters, oldest first, back to that group only, as retries due now with their attempts reset; other groups of the topic do not see them again. Each dead letter is moved once, also by concurrent calls. Returns the number moved. Group owner only, with SELECT on the topic.';

CREATE FUNCTION eventbus.purge_dead_letters(group_name text, topic text, before timestamptz DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eb_purge_dead_letters'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.purge_dead_letters(text, text, timestamptz) IS
  'Forgets a group''s dead letters (those dead-lettered before a time, or all when before is NULL), so that redrive() no longer moves them; their copies in the dead-letter topic expire with its retention. Returns the number forgotten. Group owner only.';

CREATE OR REPLACE VIEW eventbus.consumer_lag AS
SELECT g.group_name,
       g.topic,
       s.partition,
       s.committed_position,
       s.end_position,
       s.lag,
       now() - s.oldest_unconsumed_at AS time_lag,
       s.committed_at AS last_commit_at,
       s.member,
       s.lease_until,
       s.pending_retries,
       s.lost_events,
       g.paused
FROM (SELECT cg.group_name, t.topic, cg.paused
      FROM eventbus.consumer_group cg
      JOIN eventbus.topic t USING (topic_id)
      WHERE pg_catalog.pg_has_role(cg.owner, 'USAGE')
         OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
      OFFSET 0) g
CROSS JOIN LATERAL eventbus.group_status(g.group_name, g.topic) s;
COMMENT ON VIEW eventbus.consumer_lag IS
  'Lag of every consumer group on every partition: positions (lag, end_position minus the next position to consume: an upper bound of the events, see consumer_lag_exact()) and time (age of the oldest unconsumed event), last commit, lease holder, retries waiting, events lost to retention, whether the group is paused. Costs O(partitions), not O(events). Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';

CREATE VIEW eventbus.groups WITH (security_barrier) AS
SELECT cg.group_name,
       t.topic,
       cg.owner,
       cg.max_attempts,
       cg.dead_letter_topic,
       cg.paused,
       cg.created_at,
       ARRAY(SELECT DISTINCT gp.member FROM eventbus.group_partition gp
             WHERE gp.group_id = cg.group_id AND gp.lease_until > pg_catalog.clock_timestamp()
             ORDER BY 1) AS members,
       (SELECT count(*) FROM eventbus.dead_letter d
        WHERE d.group_id = cg.group_id) AS dead_letters
FROM eventbus.consumer_group cg
JOIN eventbus.topic t USING (topic_id)
WHERE pg_catalog.pg_has_role(cg.owner, 'USAGE')
   OR pg_catalog.pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW eventbus.groups IS
  'Consumer groups: topic, owner, max_attempts, dead-letter topic (NULL: none, the group consumes a dead-letter topic), paused, creation time, members holding leases now, and dead letters waiting for redrive() or purge_dead_letters(). Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
GRANT SELECT ON eventbus.groups TO PUBLIC;

-- Per-group monotonic counters (eventbus.group_stats): kept in the group's
-- rows.  Columns added without a default first, as for paused above.
ALTER TABLE eventbus.consumer_group ADD COLUMN counted_since timestamptz;
UPDATE eventbus.consumer_group SET counted_since = now();
ALTER TABLE eventbus.consumer_group ALTER COLUMN counted_since SET DEFAULT now();
ALTER TABLE eventbus.consumer_group ALTER COLUMN counted_since SET NOT NULL;
COMMENT ON TABLE eventbus.consumer_group IS
  'Consumer groups (internal; see the eventbus.groups and eventbus.consumer_lag views): one row per group and topic. dead_letter_topic NULL: the group consumes a dead-letter topic and keeps its failed events for redrive only; paused: poll() returns nothing; counted_since: when the counters of eventbus.group_stats started (the group''s creation, or the update to 0.2.0).';
ALTER TABLE eventbus.group_partition ADD COLUMN consumed_base bigint;
UPDATE eventbus.group_partition SET consumed_base = committed_position;
ALTER TABLE eventbus.group_partition ALTER COLUMN consumed_base SET NOT NULL;
ALTER TABLE eventbus.group_partition ADD COLUMN dead_lettered bigint;
UPDATE eventbus.group_partition SET dead_lettered = 0;
ALTER TABLE eventbus.group_partition ALTER COLUMN dead_lettered SET DEFAULT 0;
ALTER TABLE eventbus.group_partition ALTER COLUMN dead_lettered SET NOT NULL;
COMMENT ON TABLE eventbus.group_partition IS
  'Position of each group in each partition (internal): committed_position is the last position done; member/lease_until/generation belong to leased consumption; fetched_position is the last position handed to the lease holder, in the database session fetched_session; lost_reported is the first retained position when poll() last warned that retention removed events the group had not consumed; committed_position - consumed_base is the number of positions the group committed since counted_since (a seek moves both), dead_lettered the number of events it dead-lettered (see eventbus.group_stats).';

CREATE VIEW eventbus.group_stats WITH (security_barrier) AS
SELECT cg.group_name,
       t.topic,
       s.consumed,
       s.dead_lettered,
       cg.counted_since AS stats_reset
FROM eventbus.consumer_group cg
JOIN eventbus.topic t USING (topic_id)
CROSS JOIN LATERAL (
    SELECT coalesce(sum(gp.committed_position - gp.consumed_base), 0)::bigint AS consumed,
           coalesce(sum(gp.dead_lettered), 0)::bigint AS dead_lettered
    FROM eventbus.group_partition gp
    WHERE gp.group_id = cg.group_id) s
WHERE pg_catalog.pg_has_role(cg.owner, 'USAGE')
   OR pg_catalog.pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW eventbus.group_stats IS
  'Monotonic counters per consumer group and topic, for rates: consumed (positions the group committed, by commit() or poll(commit => true); a seek() is not counted) and dead_lettered (events the group sent to its dead-letter topic, or kept for redrive on a dead-letter topic), both since stats_reset (the group''s creation, or the update to 0.2.0). Kept in the group''s rows: they survive restarts and are dumped with the group; a new stats_reset means the group was created again. Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
GRANT SELECT ON eventbus.group_stats TO PUBLIC;

-- poll() finds a partition's due retries without reading its future ones
CREATE INDEX group_retry_due ON eventbus.group_retry (group_id, partition, not_before);

-- relay_topic() backfills: start_at earliest, a timestamp or
-- last_acknowledged; stop_relay() ends a backfill.
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

-- relay_status shows the progress of backfills (column backfill)
CREATE OR REPLACE VIEW eventbus.relay_status AS
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
COMMENT ON FUNCTION eventbus.stop_relay(text) IS
  'Stops relaying a topic: events committed from now on are not sent to Kafka, and its backfill (relay_backfill) ends. Waits for transactions publishing to the topic to end. Topic owner only.';
