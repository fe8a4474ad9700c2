-- Consumers: a group that falls behind retention is told.  consumer_lag
-- shows how many events it lost, and its next poll warns once per
-- partition and loss, then goes on from the first retained event.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c34', 1, retention => '1 second');
SELECT eventbus.create_group('g34', 'c34', 'earliest');
SELECT count(*) FROM eventbus.publish_batch('c34', array_fill('{"seg": 1}'::jsonb, ARRAY[5]));
RESET ROLE;
-- the segment rotates, then is dropped once older than the retention
SELECT pg_sleep(0.3);
SELECT count(*) > 0 AS rotated FROM eventbus.run_maintenance() WHERE topic = 'c34';
SET ROLE eb_team_a;
SELECT count(*) FROM eventbus.publish_batch('c34', array_fill('{"seg": 2}'::jsonb, ARRAY[3]));
RESET ROLE;
SELECT pg_sleep(1.2);
SELECT count(*) > 0 AS dropped FROM eventbus.run_maintenance() WHERE topic = 'c34';
SET ROLE eb_team_a;
SELECT partition, committed_position, end_position, lost_events
  FROM eventbus.consumer_lag WHERE group_name = 'g34';
-- the next poll warns and delivers what is left
SELECT position, value FROM eventbus.poll('g34', 'c34', 10);
-- once only
SELECT position FROM eventbus.poll('g34', 'c34', 10, commit => true);
SELECT partition, committed_position, lost_events
  FROM eventbus.consumer_lag WHERE group_name = 'g34';
RESET ROLE;
