-- Objects for bench/hot.sh, created once per contender's server in its
-- "postgres" database: 1,000 topics of 8 partitions (hot_1 .. hot_1000),
-- and a topic with two consumer groups for the retry workload.
\set ON_ERROR_STOP on

CREATE EXTENSION pg_eventbus;

-- one transaction each (a transaction creating them all would run out of
-- lock table entries)
SELECT format('SELECT eventbus.create_topic(%L, 8)', 'hot_' || i)
FROM generate_series(1, 1000) i \gexec

-- poll(): 16,000 events, 2,000 per partition; both groups have consumed 1,250 per partition
-- (positions 0 to 1249) and read the next 100 on each poll without
-- committing.  hot_retry also holds 10,000 retries that fall due tomorrow,
-- at the positions it consumed (1,250 per partition).
SELECT eventbus.create_topic('hot_poll', 8);
SELECT count(eventbus.publish('hot_poll', jsonb_build_object('n', i), partition => i % 8))
FROM generate_series(0, 15999) i;
SELECT eventbus.create_group('hot_none', 'hot_poll', 'earliest');
SELECT eventbus.create_group('hot_retry', 'hot_poll', 'earliest');
UPDATE eventbus.group_partition gp SET committed_position = 1249, fetched_position = 1249
FROM eventbus.consumer_group g
WHERE g.group_id = gp.group_id AND g.group_name IN ('hot_none', 'hot_retry');
INSERT INTO eventbus.group_retry (group_id, partition, position, attempts, not_before)
SELECT g.group_id, p, pos, 1, now() + interval '1 day'
FROM eventbus.consumer_group g, generate_series(0, 7) p, generate_series(0, 1249) pos
WHERE g.group_name = 'hot_retry';
ANALYZE eventbus.group_retry;
ANALYZE eventbus.group_partition;

-- segments' spares and the like, before anything is measured
SELECT count(*) AS maintenance_actions FROM eventbus.run_maintenance();
