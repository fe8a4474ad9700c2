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
