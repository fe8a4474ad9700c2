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
    position  bigint,
    duplicate boolean
);
COMMENT ON TYPE eventbus.event_position IS 'Where a published event landed; duplicate: publish() found an event with the same idempotency key and returns its position (nothing was published).';

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

CREATE FUNCTION eventbus.drop_topic(topic text, cascade boolean DEFAULT false,
                                    force boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_drop_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.drop_topic(text, boolean, boolean) IS
  'Drops a topic and all its events. Consumer groups of the topic, groups that dead-letter into it, or a relay to Kafka make it fail with an error listing them, unless force is true: then the groups of the topic are deleted and the relay stops. Objects that depend on its tables (another role''s view over eventbus_data.<topic>, say) make it fail with an error naming them, unless cascade is true: then they are dropped too. Topic owner (or a role with its privileges) only.';

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
