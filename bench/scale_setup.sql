-- Objects for bench/scale.sh, created once in the throwaway server's
-- "postgres" database.  psql variables: ntopics (topics of the topic sweep),
-- lag_groups, lag_partitions.
--
--   scale_0 .. scale_<ntopics-1>  8 partitions each: the topic sweep
--                 publishes to a random one of the first N; the idle
--                 sessions of the connection sweep hold positions in them;
--                 the wake-up runs have them all in shared memory
--   scale_pub     8 partitions: the publishers of the connection, rotation
--                 and wake-up sweeps
--   scale_poll    4 partitions: the poll sweep (groups poll_none, poll_retry)
--   scale_lag     lag_partitions partitions: consumer_lag, lag_groups groups

\set ON_ERROR_STOP on

CREATE EXTENSION IF NOT EXISTS pg_eventbus;

SELECT count(eventbus.create_topic('scale_' || i, 8))
FROM generate_series(0, :ntopics - 1) i;
SELECT eventbus.create_topic('scale_pub', 8);
SELECT eventbus.create_topic('scale_poll', 4);
SELECT eventbus.create_topic('scale_lag', :lag_partitions);
SELECT eventbus.create_topic('wake_lat', 8);

SELECT eventbus.create_group('poll_none', 'scale_poll', 'earliest');
SELECT eventbus.create_group('poll_retry', 'scale_poll', 'earliest');
SELECT count(eventbus.create_group('lag_' || g, 'scale_lag', 'earliest'))
FROM generate_series(1, :lag_groups) g;

-- The floor of PostgreSQL itself for the topic sweep: plain tables of a
-- segment table's shape (columns, primary key, partial index), one per
-- topic, inserted into with plain INSERT statements (bench/scale_plain.sql).
CREATE SCHEMA scale_plain;
SELECT format('CREATE TABLE scale_plain.t_%s (
                   partition integer NOT NULL,
                   position bigint GENERATED ALWAYS AS IDENTITY,
                   event_id uuid NOT NULL,
                   created_at timestamptz NOT NULL,
                   key text,
                   value jsonb NOT NULL,
                   headers jsonb,
                   idempotency_key text,
                   PRIMARY KEY (partition, position))', i),
       format('CREATE INDEX ON scale_plain.t_%s (idempotency_key) WHERE idempotency_key IS NOT NULL', i)
FROM generate_series(0, :ntopics - 1) i
\gexec
