-- Leases (consuming outside the database) and retries with dead letters.
SELECT eventbus.create_topic('lz', 2);
SELECT eventbus.partition_for_key('a', 2) AS pa \gset
SELECT eventbus.create_group('workers', 'lz', 'earliest');
SELECT count(*) FROM eventbus.publish_batch('lz',
  ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[], ARRAY['a', 'a', 'a']);

-- w1 leases the partition; each poll hands out new events only
SELECT partition, position FROM eventbus.poll('workers', 'lz', 2, member => 'w1', lease => '1 hour');
SELECT partition, position FROM eventbus.poll('workers', 'lz', 2, member => 'w1', lease => '1 hour');
SELECT count(*) FROM eventbus.poll('workers', 'lz', 2, member => 'w1', lease => '1 hour');
-- w2 gets nothing while the lease lasts
SELECT count(*) FROM eventbus.poll('workers', 'lz', 10, member => 'w2', lease => '1 hour');
SELECT partition, member, lease_until > now() AS leased
  FROM eventbus.consumer_lag WHERE group_name = 'workers' AND partition = :pa;
-- only the holder may commit
SELECT eventbus.commit('workers', 'lz', :pa, 0, member => 'w2');
SELECT eventbus.commit('workers', 'lz', :pa, 0);
SELECT eventbus.commit('workers', 'lz', :pa, 0, member => 'w1');

-- release ends a member's leases at once: another member continues after
-- the committed position
SELECT eventbus.release('workers', 'lz', 'w1');
SELECT partition, position FROM eventbus.poll('workers', 'lz', 10, member => 'w2', lease => '1 hour');
SELECT eventbus.release('workers', 'lz', 'w2');
SELECT eventbus.release('workers', 'lz', 'nobody');

-- an expired lease hands the partition over; uncommitted events come again
SELECT eventbus.create_group('expiring', 'lz', 'earliest');
SELECT partition, position FROM eventbus.poll('expiring', 'lz', 10, member => 'w1', lease => '0.2 seconds');
SELECT eventbus.commit('expiring', 'lz', :pa, 0, member => 'w1');
SELECT pg_sleep(0.3);
SELECT partition, position, attempt FROM eventbus.poll('expiring', 'lz', 10, member => 'w2', lease => '1 hour');
SELECT partition, member FROM eventbus.consumer_lag WHERE group_name = 'expiring' AND partition = :pa;
-- the former holder is fenced off
SELECT eventbus.commit('expiring', 'lz', :pa, 2, member => 'w1');
SELECT eventbus.nack('expiring', 'lz', :pa, 2, member => 'w1');
SELECT eventbus.commit('expiring', 'lz', :pa, 2, member => 'w2');
SELECT partition, committed_position FROM eventbus.consumer_lag
 WHERE group_name = 'expiring' AND partition = :pa;

-- a member that comes back in a new session (it restarted under the same
-- name) gets its uncommitted events again instead of skipping them
SELECT eventbus.create_group('restarting', 'lz', 'earliest');
SELECT partition, position FROM eventbus.poll('restarting', 'lz', 2, member => 'wr', lease => '1 hour');
\c
SELECT partition, position FROM eventbus.poll('restarting', 'lz', 2, member => 'wr', lease => '1 hour');
SELECT partition, position FROM eventbus.poll('restarting', 'lz', 2, member => 'wr', lease => '1 hour');

-- retries: a nacked event comes back after its delay, with its attempt
-- number, without holding up the events behind it
SELECT eventbus.create_group('retrying', 'lz', 'earliest', max_attempts => 3);
BEGIN;
SELECT partition, position, attempt FROM eventbus.poll('retrying', 'lz', 10);
SELECT eventbus.nack('retrying', 'lz', :pa, 1, retry_after => '0.3 seconds', reason => 'timeout');
SELECT eventbus.commit('retrying', 'lz', :pa, 2);
COMMIT;
-- not due yet
SELECT count(*) FROM eventbus.poll('retrying', 'lz', 10);
SELECT partition, pending_retries FROM eventbus.consumer_lag
 WHERE group_name = 'retrying' AND partition = :pa;
SELECT * FROM eventbus.publish('lz', '{"n": 5}', key => 'a');
SELECT partition, position, attempt FROM eventbus.poll('retrying', 'lz', 10, commit => true);
SELECT pg_sleep(0.4);
-- due: delivered first, with attempt 2
BEGIN;
SELECT partition, position, value, attempt FROM eventbus.poll('retrying', 'lz', 10);
SELECT eventbus.nack('retrying', 'lz', :pa, 1, retry_after => '0', reason => 'still failing');
COMMIT;
BEGIN;
SELECT partition, position, value, attempt FROM eventbus.poll('retrying', 'lz', 10);
-- the third failure sends it to the dead-letter topic
SELECT eventbus.nack('retrying', 'lz', :pa, 1, reason => 'gave up');
COMMIT;
SELECT count(*) FROM eventbus.poll('retrying', 'lz', 10);
SELECT value, headers - 'eventbus-dlq-event-id' AS headers,
       headers->>'eventbus-dlq-event-id' = (SELECT event_id::text FROM eventbus.read('lz', :pa, 0, 1)) AS same_id
  FROM eventbus.read('lz.dlq', :pa);

-- a retry that is redelivered and then committed is done
SELECT position AS redo FROM eventbus.publish('lz', '{"n": 6}', key => 'a') \gset
BEGIN;
SELECT partition, position FROM eventbus.poll('retrying', 'lz', 10);
SELECT eventbus.nack('retrying', 'lz', :pa, :redo, retry_after => '0');
COMMIT;
BEGIN;
SELECT partition, position, attempt FROM eventbus.poll('retrying', 'lz', 10);
SELECT eventbus.commit('retrying', 'lz', :pa, :redo);
COMMIT;
SELECT count(*) FROM eventbus.poll('retrying', 'lz', 10);
SELECT count(*) FROM eventbus.group_retry r JOIN eventbus.consumer_group g USING (group_id)
 WHERE g.group_name = 'retrying';

-- nack errors
BEGIN;
SELECT position AS gone FROM eventbus.publish('lz', '{"n": "gone"}', key => 'a') \gset
ROLLBACK;
SELECT eventbus.nack('retrying', 'lz', :pa, :gone);
SELECT eventbus.nack('retrying', 'lz', :pa, 99);
SELECT eventbus.nack('retrying', 'lz', :pa, 0, retry_after => '-1 second');
SELECT eventbus.nack('retrying', 'lz', :pa, 0, retry_after => NULL);
SELECT eventbus.drop_topic('lz', force => true);
SELECT eventbus.drop_topic('lz.dlq');
