-- pg_eventbus install script, assembled from src/sql/*.sql by the Makefile.

\echo Use "CREATE EXTENSION pg_eventbus" to load this file. \quit
-- Topics, segments, publishing and reading.


GRANT USAGE ON SCHEMA eventbus TO PUBLIC;

CREATE SCHEMA eventbus_data;
COMMENT ON SCHEMA eventbus_data IS
  'Event tables of pg_eventbus: one parent table per topic (its privileges are the topic''s) and segment tables inheriting from it.';
GRANT USAGE ON SCHEMA eventbus_data TO PUBLIC;

CREATE SEQUENCE eventbus.topic_id_seq AS integer;

CREATE TABLE eventbus.topic (
    topic_id    integer PRIMARY KEY DEFAULT nextval('eventbus.topic_id_seq'),
    topic       text NOT NULL UNIQUE,
    uid         bigint NOT NULL,
    partitions  integer NOT NULL CHECK (partitions > 0),
    retention   interval CHECK (retention > interval '0'),
    table_oid   regclass NOT NULL,
    owner       regrole NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    relay_to    text
) WITH (user_catalog_table = true);
ALTER SEQUENCE eventbus.topic_id_seq OWNED BY eventbus.topic.topic_id;
COMMENT ON TABLE eventbus.topic IS
  'Topics (internal; use the eventbus.topics view). owner is the role that created the topic (table_oid, its parent table, belongs to the extension owner; owner has SELECT and INSERT on it with grant option); uid identifies the topic in shared memory; relay_to is the Kafka topic its events are relayed to. A catalog table for logical decoding, so that the relay reads it as of each decoded transaction.';

CREATE TABLE eventbus.segment (
    topic_id        integer NOT NULL REFERENCES eventbus.topic ON DELETE CASCADE,
    segment         integer NOT NULL,
    table_oid       regclass NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    start_positions bigint[],
    sealed_at       timestamptz,  -- every partition's read horizon passed the segment's end
    PRIMARY KEY (topic_id, segment)
);
COMMENT ON TABLE eventbus.segment IS
  'Segment tables of each topic (internal). activated_at: when it began receiving events; start_positions: first position of each partition in it.';

SELECT pg_catalog.pg_extension_config_dump('eventbus.topic', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.segment', '');

CREATE TYPE eventbus.event_position AS (
    partition integer,
    position  bigint
);
COMMENT ON TYPE eventbus.event_position IS 'Where a published event landed.';

CREATE TYPE eventbus.event AS (
    topic      text,
    partition  integer,
    position   bigint,
    event_id   uuid,
    key        text,
    value      jsonb,
    headers    jsonb,
    created_at timestamptz
);
COMMENT ON TYPE eventbus.event IS 'An event as returned by eventbus.read().';

CREATE FUNCTION eventbus.create_topic(topic text, partitions integer DEFAULT 1,
                                      retention interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_create_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.create_topic(text, integer, interval) IS
  'Creates a topic with the given number of partitions; retention NULL or ''0'' keeps events forever, a negative one is refused. Needs CREATE on schema eventbus_data; the caller owns the topic and gets SELECT and INSERT on its table eventbus_data.<topic> with grant option.';

CREATE FUNCTION eventbus.alter_topic(topic text, partitions integer DEFAULT NULL,
                                     retention interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_alter_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.alter_topic(text, integer, interval) IS
  'Changes a topic: partitions can only grow; retention ''0'' removes the time limit, a negative one is refused; NULL leaves a setting unchanged. Topic owner (or a role with its privileges) only.';

CREATE FUNCTION eventbus.drop_topic(topic text, cascade boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_drop_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.drop_topic(text, boolean) IS
  'Drops a topic and all its events. Objects that depend on its tables (another role''s view over eventbus_data.<topic>, say) make it fail with an error naming them, unless cascade is true: then they are dropped too. Topic owner (or a role with its privileges) only.';

CREATE FUNCTION eventbus.publish(topic text, value jsonb, key text DEFAULT NULL,
                                 headers jsonb DEFAULT NULL, partition integer DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL)
RETURNS eventbus.event_position
AS 'MODULE_PATHNAME', 'eb_publish'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.publish(text, jsonb, text, jsonb, integer, text) IS
  'Publishes one event in the current transaction and returns its (partition, position). The key picks the partition as Kafka''s default partitioner does; a repeated idempotency_key returns the first event''s position. Needs INSERT on the topic.';

CREATE FUNCTION eventbus.publish_batch(topic text, vals jsonb[], keys text[] DEFAULT NULL,
                                       headers jsonb[] DEFAULT NULL)
RETURNS SETOF eventbus.event_position
AS 'MODULE_PATHNAME', 'eb_publish_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION eventbus.publish_batch(text, jsonb[], text[], jsonb[]) IS
  'Publishes many events in one call and returns their (partition, position) in input order. keys and headers, when given, have one element per value.';

CREATE FUNCTION eventbus.partition_for_key(key text, partitions integer)
RETURNS integer
AS 'MODULE_PATHNAME', 'eb_partition_for_key'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.partition_for_key(text, integer) IS
  'The partition a key maps to among the given number: Kafka''s default partitioner (positive murmur2 of the UTF-8 key, modulo partitions).';

CREATE FUNCTION eventbus.read(topic text, partition integer, after_position bigint DEFAULT -1,
                              max_events integer DEFAULT 100)
RETURNS SETOF eventbus.event
AS 'MODULE_PATHNAME', 'eb_read'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION eventbus.read(text, integer, bigint, integer) IS
  'Events of one partition after after_position, in position order, never past a position that a transaction may still commit below. Needs SELECT on the topic.';

CREATE FUNCTION eventbus.topic_partitions(topic text, OUT partition integer,
                                          OUT first_position bigint, OUT end_position bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_topic_partitions'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.topic_partitions(text) IS
  'Per partition: first position still retained and end position (the position the next event will get). Needs SELECT or INSERT on the topic, the privileges of its owner, or membership in pg_monitor.';

CREATE FUNCTION eventbus.run_maintenance(OUT topic text, OUT action text,
                                         OUT segment integer, OUT detail text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_run_maintenance'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.run_maintenance() IS
  'One maintenance pass (segment rotation and retention) over the topics whose owner''s privileges the caller has (every topic for a superuser); the background worker does this periodically.';

CREATE VIEW eventbus.topics WITH (security_barrier) AS
SELECT t.topic,
       t.partitions,
       t.retention,
       p.end_positions,
       p.events,
       s.segments,
       s.size_bytes,
       t.created_at,
       t.relay_to AS relayed_to
FROM eventbus.topic t
CROSS JOIN LATERAL (
    SELECT array_agg(tp.end_position ORDER BY tp.partition) AS end_positions,
           sum(tp.end_position - tp.first_position)::bigint AS events
    FROM eventbus.topic_partitions(t.topic) tp) p
CROSS JOIN LATERAL (
    SELECT count(*)::integer AS segments,
           coalesce(sum(pg_catalog.pg_total_relation_size(sg.table_oid)), 0)::bigint AS size_bytes
    FROM eventbus.segment sg
    WHERE sg.topic_id = t.topic_id) s
-- the topics the caller may see, as eventbus.topic_partitions() checks
WHERE pg_catalog.has_table_privilege(t.table_oid, 'SELECT')
   OR pg_catalog.has_table_privilege(t.table_oid, 'INSERT')
   OR pg_catalog.pg_has_role(t.owner, 'USAGE')
   OR pg_catalog.pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW eventbus.topics IS
  'Topics the caller may read or publish to, whose owner''s privileges it has, or all for members of pg_monitor: partition count, retention, end position of each partition, retained events (positions; aborted publishes leave gaps), segment count and size, and the Kafka topic they are relayed to.';
GRANT SELECT ON eventbus.topics TO PUBLIC;
-- Consumer groups: committed positions, in-transaction and leased
-- consumption, retries and dead letters, lag.

CREATE SEQUENCE eventbus.group_id_seq AS integer;

CREATE TABLE eventbus.consumer_group (
    group_id          integer PRIMARY KEY DEFAULT nextval('eventbus.group_id_seq'),
    group_name        text NOT NULL,
    topic_id          integer NOT NULL REFERENCES eventbus.topic ON DELETE CASCADE,
    owner             regrole NOT NULL,
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    dead_letter_topic text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_name, topic_id)
);
ALTER SEQUENCE eventbus.group_id_seq OWNED BY eventbus.consumer_group.group_id;
COMMENT ON TABLE eventbus.consumer_group IS
  'Consumer groups (internal; see the eventbus.consumer_lag view): one row per group and topic.';

-- Updated in place once per partition and batch; room on each page keeps
-- those updates HOT.
CREATE TABLE eventbus.group_partition (
    group_id           integer NOT NULL REFERENCES eventbus.consumer_group ON DELETE CASCADE,
    partition          integer NOT NULL,
    committed_position bigint NOT NULL,
    committed_at       timestamptz,
    member             text,
    lease_until        timestamptz,
    generation         bigint NOT NULL DEFAULT 0,
    fetched_position   bigint NOT NULL,
    fetched_session    text,
    lost_reported      bigint,
    PRIMARY KEY (group_id, partition)
) WITH (fillfactor = 50);
COMMENT ON TABLE eventbus.group_partition IS
  'Position of each group in each partition (internal): committed_position is the last position done; member/lease_until/generation belong to leased consumption; fetched_position is the last position handed to the lease holder, in the database session fetched_session; lost_reported is the first retained position when poll() last warned that retention removed events the group had not consumed.';

CREATE TABLE eventbus.group_retry (
    group_id    integer NOT NULL REFERENCES eventbus.consumer_group ON DELETE CASCADE,
    partition   integer NOT NULL,
    position    bigint NOT NULL,
    attempts    integer NOT NULL,
    not_before  timestamptz NOT NULL,
    delivered   boolean NOT NULL DEFAULT false,
    reason      text,
    PRIMARY KEY (group_id, partition, position)
);
COMMENT ON TABLE eventbus.group_retry IS
  'Events a group gave back with nack() (internal): delivered again after not_before; attempts counts failed deliveries; delivered is set once redelivered, so that a commit covering it ends the retry.';

SELECT pg_catalog.pg_extension_config_dump('eventbus.consumer_group', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_partition', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_retry', '');

CREATE TYPE eventbus.polled_event AS (
    topic      text,
    partition  integer,
    position   bigint,
    event_id   uuid,
    key        text,
    value      jsonb,
    headers    jsonb,
    created_at timestamptz,
    attempt    integer,
    generation bigint
);
COMMENT ON TYPE eventbus.polled_event IS
  'An event as returned by eventbus.poll(); attempt is 1 on first delivery and counts redeliveries after nack(); generation is the lease generation of the partition (NULL without a lease), to pass to commit() and nack() from another session.';

CREATE FUNCTION eventbus.create_group(group_name text, topic text, start_at text DEFAULT 'latest',
                                      max_attempts integer DEFAULT 5,
                                      dead_letter_topic text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_create_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.create_group(text, text, text, integer, text) IS
  'Creates a consumer group on a topic, starting at ''earliest'', ''latest'' or a timestamp. After max_attempts deliveries a nacked event goes to dead_letter_topic (default <topic>.dlq, created if missing). Needs SELECT on the topic.';

CREATE FUNCTION eventbus.alter_group(group_name text, topic text, max_attempts integer DEFAULT NULL,
                                     dead_letter_topic text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_alter_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.alter_group(text, text, integer, text) IS
  'Changes a group''s max_attempts or dead-letter topic; NULL leaves a setting unchanged. Group owner only.';

CREATE FUNCTION eventbus.delete_group(group_name text, topic text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_delete_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.delete_group(text, text) IS
  'Deletes a group on one topic, or on every topic when topic is NULL, with its positions and pending retries. Group owner only.';

CREATE FUNCTION eventbus.seek(group_name text, topic text, start_at text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_seek_all'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.seek(text, text, text) IS
  'Moves a group on every partition to ''earliest'', ''latest'' or the first event at or after a timestamp; drops its pending retries and leases. Group owner only.';

CREATE FUNCTION eventbus.seek(group_name text, topic text, partition integer, "position" bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_seek_position'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.seek(text, text, integer, bigint) IS
  'Makes position the next event a group receives from a partition (forwards or backwards); drops the partition''s pending retries and lease. Group owner only.';

CREATE FUNCTION eventbus.poll(group_name text, topic text, max_events integer DEFAULT 100,
                              member text DEFAULT NULL, lease interval DEFAULT NULL,
                              commit boolean DEFAULT false)
RETURNS SETOF eventbus.polled_event
AS 'MODULE_PATHNAME', 'eb_poll'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION eventbus.poll(text, text, integer, text, interval, boolean) IS
  'Up to max_events events for a group, in position order per partition. Without member: the partitions returned are held by this transaction, commit() in it makes processing exactly-once, and commit => true commits them at once. With member and lease: partitions are leased to that member for the lease time. Needs SELECT on the topic.';

CREATE FUNCTION eventbus.commit(group_name text, topic text, partition integer, "position" bigint,
                                member text DEFAULT NULL, generation bigint DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_commit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.commit(text, text, integer, bigint, text, bigint) IS
  'Marks every event of a partition up to and including position as done for a group (including retries at or below it). Without member, only positions a poll of the current transaction handed out (a position at or below the committed one changes nothing). With member, only positions handed to that member, and refused once the lease was taken over (generation: the lease generation poll() returned; by default the one this session was handed). To move a group on purpose, use seek().';

CREATE FUNCTION eventbus.nack(group_name text, topic text, partition integer, "position" bigint,
                              retry_after interval DEFAULT '30 seconds', reason text DEFAULT NULL,
                              member text DEFAULT NULL, generation bigint DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'eb_nack'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.nack(text, text, integer, bigint, interval, text, text, bigint) IS
  'Gives an event back: it is delivered again after retry_after without holding up the events behind it; once delivered max_attempts times it goes to the group''s dead-letter topic with the reason (the caller must be allowed to publish there). Only an event handed to the caller (as for commit()) and not committed, or a retry redelivered since. Returns ''retry'' or ''dead-lettered''.';

CREATE FUNCTION eventbus.release(group_name text, topic text, member text)
RETURNS integer
AS 'MODULE_PATHNAME', 'eb_release'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.release(text, text, text) IS
  'Ends a member''s leases at once (for a clean shutdown); uncommitted events are delivered again to the next member. Returns the number of partitions released.';

CREATE FUNCTION eventbus.group_status(group_name text, topic text,
    OUT partition integer, OUT committed_position bigint, OUT end_position bigint,
    OUT lag bigint, OUT oldest_unconsumed_at timestamptz, OUT committed_at timestamptz,
    OUT member text, OUT lease_until timestamptz, OUT pending_retries bigint,
    OUT lost_events bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_group_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.group_status(text, text) IS
  'Per partition of a group: committed and end positions, lag in events (retained events after the committed position), the creation time of the oldest unconsumed event, last commit, lease, retries waiting, and events retention removed before the group consumed them (lost_events). For roles with the privileges of the group''s owner and members of pg_monitor.';

CREATE VIEW eventbus.consumer_lag AS
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
       s.lost_events
FROM (SELECT cg.group_name, t.topic
      FROM eventbus.consumer_group cg
      JOIN eventbus.topic t USING (topic_id)
      WHERE pg_catalog.pg_has_role(cg.owner, 'USAGE')
         OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
      OFFSET 0) g
CROSS JOIN LATERAL eventbus.group_status(g.group_name, g.topic) s;
COMMENT ON VIEW eventbus.consumer_lag IS
  'Lag of every consumer group on every partition: events (lag) and time (age of the oldest unconsumed event), last commit, lease holder, retries waiting, events lost to retention. Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
GRANT SELECT ON eventbus.consumer_lag TO PUBLIC;

CREATE FUNCTION eventbus.wait(group_name text, topic text,
                              timeout interval DEFAULT '30 seconds', member text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eb_wait'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.wait(text, text, interval, text) IS
  'Blocks until the group has events to poll on the topic (true) or the timeout passes (false); an event committed just before the call is never missed. With member, counts from what that member was handed. Call it outside a REPEATABLE READ transaction. Needs SELECT on the topic.';
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
COMMENT ON TABLE eventbus.relay_dead_letter IS
  'Events that Kafka refused for good and the relay passed over (topics relayed with on_error => ''dead_letter''): where the event is (topic, partition, position, event_id), its commit LSN, the Kafka error, when. Superusers and pg_monitor may read it; superusers may delete rows.';

CREATE FUNCTION eventbus.relay_topic(topic text, kafka_topic text DEFAULT NULL,
                                     on_error text DEFAULT 'stop')
RETURNS void
AS 'MODULE_PATHNAME', 'eb_relay_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_topic(text, text, text) IS
  'Relays the events of a topic committed from now on to a Kafka topic (default: the same name). on_error: what to do with an event Kafka refuses for good, ''stop'' (relaying waits) or ''dead_letter'' (eventbus.relay_dead_letter, relaying goes on). Topic owner only; the caller and the owner must be allowed to relay into the Kafka topic (allow_relay()).';

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
  'For each relayed topic, events published but not yet acknowledged by Kafka (NULL until the relay acknowledged an event of the topic since the server started). Superusers and pg_monitor only.';
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
       (SELECT jsonb_object_agg(b.topic, b.backlog) FROM eventbus.relay_backlog() b) AS backlog
FROM eventbus.relay_stats() s
LEFT JOIN pg_catalog.pg_replication_slots r ON r.slot_name = s.slot_name;
COMMENT ON VIEW eventbus.relay_status IS
  'Health of the Kafka relay: state, slot, confirmed LSN, WAL retained, events and bytes relayed, messages in flight, outbox backlog, commit-to-acknowledgement latency, last error, last acknowledgement, content skipped because it could not be relayed (count, last LSN, reason), backlog per relayed topic. Superusers and pg_monitor only.';
REVOKE ALL ON eventbus.relay_status FROM PUBLIC;
GRANT SELECT ON eventbus.relay_status TO pg_monitor;
