-- Operating groups: the groups view, pause/resume, dead-letter topics made
-- at the first dead letter, redrive and purge, balanced leases, commit of a
-- member, duplicate publishes.
SET client_min_messages = notice;
SELECT eventbus.create_topic('op', 2, '3 days');
SELECT eventbus.create_group('billing', 'op', 'earliest', max_attempts => 1);
SELECT eventbus.create_group('audit', 'op', 'earliest', max_attempts => 1);
-- no dead-letter topic yet
SELECT count(*) FROM eventbus.topics WHERE topic = 'op.dlq';
SELECT group_name, topic, owner, max_attempts, dead_letter_topic, paused, members, dead_letters
  FROM eventbus.groups WHERE topic = 'op' ORDER BY 1;

-- duplicate in publish's result
SELECT * FROM eventbus.publish('op', '{"n": 0}', partition => 0, idempotency_key => 'k0');
SELECT * FROM eventbus.publish('op', '{"n": 0}', partition => 0, idempotency_key => 'k0');
SELECT * FROM eventbus.publish_batch('op', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[], ARRAY['a', 'a']);

-- pause: poll returns nothing, wait does not return true, consumer_lag shows it
SELECT eventbus.pause_group('billing', 'op');
SELECT count(*) FROM eventbus.poll('billing', 'op', 10);
SELECT eventbus.wait('billing', 'op', '0 seconds');
SELECT DISTINCT group_name, paused FROM eventbus.consumer_lag WHERE topic = 'op' ORDER BY 1;
SELECT eventbus.resume_group('billing', 'op');
SELECT eventbus.wait('billing', 'op', '0 seconds');
SELECT DISTINCT group_name, paused FROM eventbus.consumer_lag WHERE topic = 'op' ORDER BY 1;
SELECT eventbus.pause_group('nope', 'op');

-- the first dead letter creates op.dlq, with the source topic's partitions
-- and retention, owned by the group's owner
BEGIN;
SELECT partition, position FROM eventbus.poll('billing', 'op', 10) ORDER BY 1, 2;
SELECT eventbus.nack('billing', 'op', 0, 0, reason => 'bad');
SELECT eventbus.commit('billing', 'op', 0, 0);
COMMIT;
SELECT topic, partitions, retention FROM eventbus.topics WHERE topic = 'op.dlq';
SELECT t.owner = current_user::regrole FROM eventbus.topic t WHERE topic = 'op.dlq';
SELECT value, headers->>'eventbus-dlq-group' AS grp
  FROM eventbus.read('op.dlq', 0) UNION ALL SELECT value, headers->>'eventbus-dlq-group' FROM eventbus.read('op.dlq', 1);
SELECT group_name, dead_letters FROM eventbus.groups WHERE topic = 'op' ORDER BY 1;
-- audit consumes everything and is done
SELECT count(*) FROM eventbus.poll('audit', 'op', 10, commit => true);

-- a group on a dead-letter topic has no dead-letter topic of its own
SELECT eventbus.create_group('dlq-watch', 'op.dlq', 'earliest', max_attempts => 1);
SELECT dead_letter_topic IS NULL AS no_dlq FROM eventbus.groups WHERE group_name = 'dlq-watch';
BEGIN;
-- (the copy's partition is picked round-robin: the event has no key)
SELECT partition AS dp, position AS dpos FROM eventbus.poll('dlq-watch', 'op.dlq', 10) \gset
-- a WARNING names the partition: not shown here
SET client_min_messages = error;
SELECT eventbus.nack('dlq-watch', 'op.dlq', :dp, :dpos);
SET client_min_messages = notice;
COMMIT;
SELECT count(*) FROM eventbus.topics WHERE topic = 'op.dlq.dlq';
SELECT group_name, dead_letters FROM eventbus.groups WHERE group_name = 'dlq-watch';
SELECT eventbus.purge_dead_letters('dlq-watch', 'op.dlq');
SELECT eventbus.delete_group('dlq-watch', 'op.dlq');

-- redrive: back to billing only, attempts start again; audit gets nothing
SELECT eventbus.redrive('billing', 'op', max_events => 0);
SELECT eventbus.redrive('billing', 'op');
SELECT eventbus.redrive('billing', 'op');
SELECT partition, position, value, attempt FROM eventbus.poll('billing', 'op', 10, commit => true);
SELECT count(*) FROM eventbus.poll('audit', 'op', 10);
SELECT group_name, dead_letters FROM eventbus.groups WHERE topic = 'op' ORDER BY 1;

-- purge: before a time, or all
SELECT * FROM eventbus.publish('op', '{"n": 3}', partition => 1);
BEGIN;
SELECT partition, position FROM eventbus.poll('billing', 'op', 10);
SELECT eventbus.nack('billing', 'op', 1, 0);
COMMIT;
SELECT eventbus.purge_dead_letters('billing', 'op', now() - interval '1 hour');
SELECT eventbus.purge_dead_letters('billing', 'op');
SELECT eventbus.redrive('billing', 'op');

-- drop_topic refuses while groups use the topic, naming them
SELECT eventbus.drop_topic('op.dlq');

-- balanced leases: 2 members over 4 partitions, then 3 over 6
SELECT eventbus.create_topic('bal', 4);
SELECT eventbus.create_group('w', 'bal', 'earliest');
SELECT count(*) FROM generate_series(0, 3) p, LATERAL eventbus.publish('bal', '{}', partition => p);
SELECT count(DISTINCT partition) FROM eventbus.poll('w', 'bal', 100, 'm1', '1 hour');
-- a second member comes: nothing is taken from m1 while it has uncommitted events
SELECT count(DISTINCT partition) FROM eventbus.poll('w', 'bal', 100, 'm2', '1 hour');
-- m1 commits everything it was handed, and at its next poll keeps its share
SELECT eventbus.commit('w', 'bal', 'm1');
SELECT eventbus.commit('w', 'bal', 'm1');
SELECT count(*) FROM eventbus.poll('w', 'bal', 100, 'm1', '1 hour');
SELECT count(*) FROM generate_series(0, 3) p, LATERAL eventbus.publish('bal', '{}', partition => p);
SELECT count(DISTINCT partition) FROM eventbus.poll('w', 'bal', 100, 'm2', '1 hour');
SELECT count(DISTINCT partition) FROM eventbus.poll('w', 'bal', 100, 'm1', '1 hour');
SELECT members FROM eventbus.groups WHERE group_name = 'w';
SELECT member, count(*) FROM eventbus.consumer_lag WHERE group_name = 'w' GROUP BY 1 ORDER BY 1;
SELECT eventbus.commit('w', 'bal', 'm1') + eventbus.commit('w', 'bal', 'm2');

SELECT eventbus.alter_topic('bal', partitions => 6);
SELECT count(*) FROM generate_series(0, 5) p, LATERAL eventbus.publish('bal', '{}', partition => p);
SELECT count(DISTINCT partition) <= 3 FROM eventbus.poll('w', 'bal', 100, 'm3', '1 hour');
SELECT eventbus.commit('w', 'bal', 'm1') + eventbus.commit('w', 'bal', 'm2') + eventbus.commit('w', 'bal', 'm3');
SELECT count(*) FROM generate_series(0, 5) p, LATERAL eventbus.publish('bal', '{}', partition => p);
SELECT count(DISTINCT partition) FROM eventbus.poll('w', 'bal', 100, 'm1', '1 hour');
SELECT count(DISTINCT partition) FROM eventbus.poll('w', 'bal', 100, 'm2', '1 hour');
SELECT count(DISTINCT partition) FROM eventbus.poll('w', 'bal', 100, 'm3', '1 hour');
SELECT member, count(*) FROM eventbus.consumer_lag WHERE group_name = 'w' GROUP BY 1 ORDER BY 1;
-- commit(group, topic, member) and the positional commit are told apart
SELECT eventbus.commit('w', 'bal', 'm1');
SELECT eventbus.commit('w', 'bal', 0, 0);

-- wait(member) counts only what that member's poll would get: at its
-- share, partitions no one leases are left to the other members
SELECT eventbus.create_topic('wm', 2);
SELECT eventbus.create_group('wg', 'wm', 'earliest');
SELECT count(*) FROM generate_series(0, 1) p, LATERAL eventbus.publish('wm', '{}', partition => p);
SELECT count(DISTINCT partition) FROM eventbus.poll('wg', 'wm', 100, 'm1', '1 hour');
SELECT eventbus.commit('wg', 'wm', 'm1');
-- m2 joins (share 1 each); m1 gives up partition 1 at its next poll
SELECT count(*) FROM eventbus.poll('wg', 'wm', 100, 'm2', '1 hour');
SELECT count(*) FROM eventbus.poll('wg', 'wm', 100, 'm1', '1 hour');
SELECT partition, member FROM eventbus.consumer_lag WHERE group_name = 'wg' ORDER BY 1;
SELECT * FROM eventbus.publish('wm', '{}', partition => 1);
SELECT eventbus.wait('wg', 'wm', '0 seconds', member => 'm1') AS m1_woken;
SELECT eventbus.wait('wg', 'wm', '0 seconds', member => 'm2') AS m2_woken;
SELECT eventbus.wait('wg', 'wm', '0 seconds') AS any_woken;
SELECT count(*) FROM eventbus.poll('wg', 'wm', 100, 'm1', '1 hour');
SELECT * FROM eventbus.publish('wm', '{}', partition => 0);
SELECT eventbus.wait('wg', 'wm', '0 seconds', member => 'm1') AS m1_woken;
SELECT partition, position FROM eventbus.poll('wg', 'wm', 100, 'm1', '1 hour');
SELECT partition, position FROM eventbus.poll('wg', 'wm', 100, 'm2', '1 hour');
SELECT eventbus.drop_topic('wm', force => true);

-- group_stats: monotonic per-group counters of committed positions and
-- dead letters; seek, redrive, purge and rolled-back commits do not count
SELECT eventbus.create_topic('gs', 2);
SELECT eventbus.create_group('g1', 'gs', 'earliest', max_attempts => 1);
SELECT eventbus.create_group('g2', 'gs', 'earliest');
SELECT count(*) FROM generate_series(1, 5) i,
  LATERAL eventbus.publish('gs', '{}', partition => i % 2);
SELECT group_name, topic, consumed, dead_lettered, stats_reset IS NOT NULL AS has_reset
  FROM eventbus.group_stats WHERE topic = 'gs' ORDER BY 1;
SELECT count(*) FROM eventbus.poll('g1', 'gs', 100, commit => true);
BEGIN;
SELECT count(*) FROM eventbus.poll('g2', 'gs', 100);
SELECT eventbus.commit('g2', 'gs', 0, 1);
ROLLBACK;
BEGIN;
SELECT count(*) FROM eventbus.poll('g2', 'gs', 100);
SELECT eventbus.commit('g2', 'gs', 0, 1);
COMMIT;
SELECT group_name, consumed, dead_lettered FROM eventbus.group_stats WHERE topic = 'gs' ORDER BY 1;
-- a dead letter of g1 (the first: gs.dlq is created)
SELECT * FROM eventbus.publish('gs', '{}', partition => 1);
BEGIN;
SELECT partition, position FROM eventbus.poll('g1', 'gs', 100);
SELECT eventbus.nack('g1', 'gs', 1, 3, reason => 'bad');
SELECT eventbus.commit('g1', 'gs', 1, 3);
COMMIT;
SELECT group_name, consumed, dead_lettered FROM eventbus.group_stats WHERE topic = 'gs' ORDER BY 1;
-- seek back and consume again: counted again; the seek itself is not
SELECT eventbus.seek('g1', 'gs', 'earliest');
SELECT group_name, consumed FROM eventbus.group_stats WHERE group_name = 'g1';
SELECT eventbus.seek('g1', 'gs', 'latest');
SELECT group_name, consumed FROM eventbus.group_stats WHERE group_name = 'g1';
SELECT eventbus.seek('g1', 'gs', 1, 0);
SELECT count(*) FROM eventbus.poll('g1', 'gs', 100, commit => true);
SELECT group_name, consumed FROM eventbus.group_stats WHERE group_name = 'g1';
-- redrive and purge leave dead_lettered as it is
SELECT eventbus.redrive('g1', 'gs');
SELECT eventbus.purge_dead_letters('g1', 'gs');
SELECT group_name, dead_lettered FROM eventbus.group_stats WHERE group_name = 'g1';
-- a group created again starts again, with a new stats_reset
SELECT stats_reset AS g2_reset FROM eventbus.group_stats WHERE group_name = 'g2' \gset
SELECT eventbus.delete_group('g2', 'gs');
SELECT eventbus.create_group('g2', 'gs', 'earliest');
SELECT consumed, dead_lettered, stats_reset >= :'g2_reset' AS later
  FROM eventbus.group_stats WHERE group_name = 'g2';
-- a partition added later counts from its start
SELECT eventbus.alter_topic('gs', partitions => 3);
SELECT * FROM eventbus.publish('gs', '{}', partition => 2);
SELECT count(*) FROM eventbus.poll('g2', 'gs', 100, commit => true);
SELECT group_name, consumed FROM eventbus.group_stats WHERE group_name = 'g2';
SELECT eventbus.drop_topic('gs', force => true);
SELECT eventbus.drop_topic('gs.dlq');

SELECT eventbus.drop_topic('bal', force => true);
SELECT eventbus.drop_topic('op', force => true);
SELECT eventbus.drop_topic('op.dlq');
