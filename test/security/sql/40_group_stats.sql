-- Counters: topic_stats shows a topic to the roles that may read it and to
-- pg_monitor; group_stats shows a group to the roles with its owner's
-- privileges and to pg_monitor.  Nobody else learns that a topic or a group
-- exists, nor how busy it is, and nobody reads the counters' internal
-- columns.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('st40', 1);
SELECT eventbus.create_group('g40', 'st40', 'earliest', max_attempts => 1);
SELECT count(*) FROM generate_series(1, 3) i, LATERAL eventbus.publish('st40', jsonb_build_object('i', i));
SELECT count(*) FROM eventbus.poll('g40', 'st40', 2, commit => true);
BEGIN;
SELECT count(*) FROM eventbus.poll('g40', 'st40', 1);
SELECT eventbus.nack('g40', 'st40', 0, 2);
COMMIT;
-- the owner sees its topic's and its group's counters
SELECT topic, published, consumed, dead_lettered FROM eventbus.topic_stats
  WHERE topic LIKE 'st40%' ORDER BY 1;
SELECT group_name, topic, consumed, dead_lettered, stats_reset IS NOT NULL AS has_reset
  FROM eventbus.group_stats WHERE topic LIKE 'st40%';
RESET ROLE;

-- a role with no grant sees nothing
SET ROLE eb_nobody;
SELECT count(*) FROM eventbus.topic_stats;
SELECT count(*) FROM eventbus.group_stats;
SELECT count(*) FROM eventbus.topic_stats_counters();
SELECT consumed_base, dead_lettered FROM eventbus.group_partition;
SELECT counted_since FROM eventbus.consumer_group;
RESET ROLE;

-- the attacker sees nothing either, and reading the topic does not show
-- another role's group
SET ROLE eb_attacker;
SELECT count(*) FROM eventbus.topic_stats WHERE topic LIKE 'st40%';
SELECT count(*) FROM eventbus.group_stats;
RESET ROLE;
GRANT SELECT ON eventbus_data.st40 TO eb_attacker;
SET ROLE eb_attacker;
SELECT topic, published FROM eventbus.topic_stats WHERE topic LIKE 'st40%';
SELECT count(*) FROM eventbus.group_stats;
SELECT count(*) FROM eventbus.consumer_lag_exact('g40', 'st40');
SELECT count(*) FROM eventbus.group_status('g40', 'st40');
-- its own group on the topic is the only one it sees (st40.dlq is not its
-- to publish to: it dead-letters into a topic of its own)
SELECT eventbus.create_topic('att40');
SELECT eventbus.create_group('mine40', 'st40', 'earliest', dead_letter_topic => 'att40');
SELECT count(*) FROM eventbus.poll('mine40', 'st40', 10, commit => true);
SELECT group_name, consumed, dead_lettered FROM eventbus.group_stats;
-- a security-barrier view: a leaky function in its WHERE clause sees only
-- the rows the view shows
CREATE FUNCTION attacker.leak40(t text) RETURNS boolean
  LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN RAISE NOTICE 'saw group %', t; RETURN true; END $$;
SELECT count(*) FROM eventbus.group_stats WHERE attacker.leak40(group_name);
SELECT eventbus.delete_group('mine40', 'st40');
SELECT eventbus.drop_topic('att40');
DROP FUNCTION attacker.leak40(text);
RESET ROLE;

-- pg_monitor sees every topic and every group
CREATE ROLE eb_monitor40 IN ROLE pg_monitor;
SET ROLE eb_monitor40;
SELECT topic, published FROM eventbus.topic_stats WHERE topic LIKE 'st40%' ORDER BY 1;
SELECT group_name, topic, consumed, dead_lettered FROM eventbus.group_stats
  WHERE topic LIKE 'st40%';
SELECT partition, lag FROM eventbus.consumer_lag_exact('g40', 'st40');
RESET ROLE;
DROP ROLE eb_monitor40;

SELECT eventbus.drop_topic('st40', force => true);
SELECT eventbus.drop_topic('st40.dlq');
