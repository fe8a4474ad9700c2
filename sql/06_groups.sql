-- Consumer groups: creation, start positions, poll/commit, seek, errors.
SELECT eventbus.create_topic('cg', 2);
SELECT eventbus.partition_for_key('a', 2) AS pa, eventbus.partition_for_key('k0', 2) AS pb \gset
SELECT count(*) FROM eventbus.publish_batch('cg',
  ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}']::jsonb[], ARRAY['a', 'k0', 'a', 'k0']);

-- start at earliest, latest, or a timestamp
SELECT eventbus.create_group('from-start', 'cg', 'earliest');
SELECT eventbus.create_group('from-now', 'cg');
SELECT pg_sleep(0.01);
SELECT now() AS t0 \gset
SELECT pg_sleep(0.01);
SELECT count(*) FROM eventbus.publish_batch('cg', ARRAY['{"n": 5}', '{"n": 6}']::jsonb[], ARRAY['a', 'k0']);
SELECT eventbus.create_group('from-time', 'cg', :'t0');
SELECT group_name, partition, committed_position, end_position, lag
  FROM eventbus.consumer_lag WHERE topic = 'cg' ORDER BY 1, 2;
-- the dead-letter topic is not created with the group (only at the first dead letter)
SELECT topic, partitions FROM eventbus.topics WHERE topic = 'cg.dlq';

-- poll returns events in position order per partition, with attempt 1
SELECT partition, position, value, attempt
  FROM eventbus.poll('from-start', 'cg', 10) ORDER BY partition, position;
-- without commit nothing moves: the same events again
SELECT count(*) FROM eventbus.poll('from-start', 'cg', 10);
-- commit in the same transaction as the work
CREATE TABLE sink (partition int, position bigint, n int);
BEGIN;
INSERT INTO sink SELECT partition, position, (value->>'n')::int
  FROM eventbus.poll('from-start', 'cg', 10);
SELECT eventbus.commit('from-start', 'cg', partition, max(position) - 1)
  FROM sink GROUP BY partition ORDER BY partition;
COMMIT;
DELETE FROM sink WHERE position = 2;
SELECT * FROM sink ORDER BY partition, position;
SELECT partition, position FROM eventbus.poll('from-start', 'cg', 10) ORDER BY 1, 2;
-- a rolled-back transaction leaves its events for the next poll
BEGIN;
INSERT INTO sink SELECT partition, position, (value->>'n')::int
  FROM eventbus.poll('from-start', 'cg', 10, commit => true);
ROLLBACK;
SELECT count(*) FROM eventbus.poll('from-start', 'cg', 10);
-- the one-statement form consumes exactly once
INSERT INTO sink SELECT partition, position, (value->>'n')::int
  FROM eventbus.poll('from-start', 'cg', 100, commit => true);
SELECT count(*) AS rows, count(DISTINCT (partition, position)) AS distinct_events FROM sink;
SELECT count(*) FROM eventbus.poll('from-start', 'cg', 100, commit => true);

-- 'latest' and a timestamp start where they should
SELECT partition, position, value FROM eventbus.poll('from-now', 'cg', 10) ORDER BY 1, 2;
SELECT partition, position, value FROM eventbus.poll('from-time', 'cg', 10) ORDER BY 1, 2;

-- commit never moves backwards; it only accepts handed-out positions
SELECT eventbus.commit('from-start', 'cg', :pa, 0);
SELECT committed_position FROM eventbus.consumer_lag
 WHERE group_name = 'from-start' AND partition = :pa;
SELECT eventbus.commit('from-start', 'cg', :pa, 99);
SELECT eventbus.commit('from-start', 'cg', :pa, -1);
SELECT eventbus.commit('from-start', 'cg', 7, 0);
SELECT eventbus.commit('nobody', 'cg', 0, 0);

-- seek to a position, to earliest, to latest
SELECT eventbus.seek('from-start', 'cg', :pa, 1);
SELECT partition, position FROM eventbus.poll('from-start', 'cg', 10) ORDER BY 1, 2;
SELECT eventbus.seek('from-start', 'cg', 'earliest');
SELECT count(*) FROM eventbus.poll('from-start', 'cg', 100);
SELECT eventbus.seek('from-start', 'cg', 'latest');
SELECT count(*) FROM eventbus.poll('from-start', 'cg', 100);
SELECT eventbus.seek('from-start', 'cg', :pa, 100);
SELECT eventbus.seek('from-start', 'cg', 'yesterday-ish');

-- a topic that grows: the new partition is read from its beginning
SELECT eventbus.alter_topic('cg', partitions => 3);
SELECT * FROM eventbus.publish('cg', '{"n": "new"}', partition => 2);
SELECT partition, position, value FROM eventbus.poll('from-now', 'cg', 10, commit => true) ORDER BY 1, 2;
-- commit() on a partition the group has not polled since the topic grew:
-- refused, as no poll handed it out
SELECT eventbus.alter_topic('cg', partitions => 4);
SELECT * FROM eventbus.publish('cg', '{"n": "newer"}', partition => 3);
SELECT eventbus.commit('from-start', 'cg', 3, 0);
SELECT partition, committed_position FROM eventbus.consumer_lag
 WHERE group_name = 'from-start' AND partition = 3;

-- lag of an empty topic and a new group
SELECT eventbus.create_topic('cg-empty', 2);
SELECT eventbus.create_group('g', 'cg-empty', 'earliest');
SELECT partition, committed_position, end_position, lag, time_lag
  FROM eventbus.consumer_lag WHERE topic = 'cg-empty' ORDER BY partition;
-- time lag is the age of the oldest unconsumed event
SELECT * FROM eventbus.publish('cg-empty', '{}', partition => 0);
SELECT pg_sleep(0.05);
SELECT partition, lag, time_lag >= interval '0.05 seconds' AS waited
  FROM eventbus.consumer_lag WHERE topic = 'cg-empty' ORDER BY partition;
-- lag is a position difference: a rolled-back publish counts in it (an
-- upper bound); consumer_lag_exact() counts only committed events
BEGIN;
SELECT * FROM eventbus.publish('cg-empty', '{}', partition => 0);
ROLLBACK;
SELECT partition, end_position, lag FROM eventbus.consumer_lag WHERE topic = 'cg-empty' ORDER BY partition;
SELECT partition, end_position, lag FROM eventbus.consumer_lag_exact('g', 'cg-empty') ORDER BY partition;

-- errors
SELECT eventbus.create_group('from-start', 'cg');
SELECT eventbus.create_group('bad name', 'cg');
SELECT eventbus.create_group(NULL, 'cg');
SELECT eventbus.create_group('g2', 'nope');
SELECT eventbus.create_group('g2', 'cg', NULL);
SELECT eventbus.create_group('g2', 'cg', 'not a time');
SELECT eventbus.create_group('g2', 'cg', max_attempts => 0);
SELECT eventbus.create_group('g2', 'cg', dead_letter_topic => 'cg');
SELECT eventbus.create_group('g2', repeat('t', 54));
SELECT eventbus.poll('nope', 'cg');
SELECT eventbus.poll('from-start', 'cg', 0);
SELECT eventbus.poll('from-start', 'cg', member => 'm1');
SELECT eventbus.poll('from-start', 'cg', lease => '1 minute');
SELECT eventbus.poll('from-start', 'cg', member => 'm1', lease => '-1 minute');
BEGIN READ ONLY;
SELECT eventbus.poll('from-start', 'cg');
ROLLBACK;

-- delete a group, or a group on every topic
SELECT eventbus.create_group('from-start', 'cg-empty');
SELECT eventbus.delete_group('from-start', 'cg');
SELECT group_name, topic FROM eventbus.consumer_lag GROUP BY 1, 2 ORDER BY 1, 2;
SELECT eventbus.delete_group('from-start');
SELECT eventbus.delete_group('from-start');
-- dropping a topic that groups use is refused, and says what would go;
-- force => true drops its groups
SELECT eventbus.drop_topic('cg-empty');
SELECT eventbus.drop_topic('cg-empty', force => true);
SELECT group_name, topic FROM eventbus.consumer_lag GROUP BY 1, 2 ORDER BY 1, 2;
DROP TABLE sink;

-- clean up
SELECT eventbus.drop_topic('cg', force => true);
SELECT count(*) AS topics_left FROM eventbus.topics;
