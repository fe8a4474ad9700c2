-- Operating groups: who may see, pause, redrive and purge a group, and the
-- dead-letter topic created at the first dead letter.
CREATE ROLE eb_reader39;
SET ROLE eb_team_a;
SELECT eventbus.create_topic('op39', 1);
SELECT * FROM eventbus.publish('op39', '{"n": 1}');
GRANT SELECT ON eventbus_data.op39 TO eb_reader39, eb_attacker;
RESET ROLE;
-- eb_reader39 may not create topics, yet needs none to create a group with
-- the default dead-letter topic
SELECT has_schema_privilege('eb_reader39', 'eventbus_data', 'CREATE');
SET ROLE eb_reader39;
SELECT eventbus.create_group('g39', 'op39', 'earliest', max_attempts => 1);
-- a dead-letter topic of another name needs the right to create topics
SELECT eventbus.create_group('g39x', 'op39', 'earliest', dead_letter_topic => 'elsewhere39');
-- the first dead letter creates op39.dlq, owned by the group's owner
BEGIN;
SELECT position FROM eventbus.poll('g39', 'op39', 10);
SELECT eventbus.nack('g39', 'op39', 0, 0);
COMMIT;
SELECT topic FROM eventbus.topics WHERE topic = 'op39.dlq';
RESET ROLE;
SELECT owner FROM eventbus.topic WHERE topic = 'op39.dlq';
SELECT c.relowner = e.extowner AS extension_owns
  FROM pg_class c, pg_extension e
  WHERE c.oid = 'eventbus_data."op39.dlq"'::regclass AND e.extname = 'pg_eventbus';
SELECT grantee, privilege_type, is_grantable FROM information_schema.role_table_grants
  WHERE table_schema = 'eventbus_data' AND table_name = 'op39.dlq'
    AND grantee IN ('eb_team_a', 'eb_reader39', 'eb_attacker', 'PUBLIC') ORDER BY 1, 2;
-- others see no such group, and may not pause, resume, redrive or purge it
SET ROLE eb_attacker;
SELECT count(*) FROM eventbus.groups;
SELECT eventbus.pause_group('g39', 'op39');
SELECT eventbus.resume_group('g39', 'op39');
SELECT eventbus.redrive('g39', 'op39');
SELECT eventbus.purge_dead_letters('g39', 'op39');
SELECT eventbus.commit('g39', 'op39', 'm');
SELECT count(*) FROM eventbus.read('op39.dlq', 0);
SET ROLE eb_team_a;
SELECT count(*) FROM eventbus.groups WHERE group_name = 'g39';
SELECT eventbus.redrive('g39', 'op39');
-- the owner sees, pauses, redrives and purges
SET ROLE eb_reader39;
SELECT group_name, owner, dead_letter_topic, paused, dead_letters FROM eventbus.groups;
SELECT eventbus.pause_group('g39', 'op39');
SELECT count(*) FROM eventbus.poll('g39', 'op39', 10);
SELECT eventbus.resume_group('g39', 'op39');
SELECT eventbus.redrive('g39', 'op39', 1);
SELECT position, attempt FROM eventbus.poll('g39', 'op39', 10, commit => true);
SELECT eventbus.purge_dead_letters('g39', 'op39');
RESET ROLE;
-- pg_monitor and superusers see every group
CREATE ROLE eb_monitor39 IN ROLE pg_monitor;
SET ROLE eb_monitor39;
SELECT group_name FROM eventbus.groups WHERE topic = 'op39';
SELECT eventbus.pause_group('g39', 'op39');
RESET ROLE;
SELECT group_name FROM eventbus.groups WHERE topic = 'op39';
DROP ROLE eb_monitor39;
-- the topic's owner may not drop it from under team b's group by accident
SET ROLE eb_team_a;
SELECT eventbus.drop_topic('op39');
RESET ROLE;
SELECT eventbus.drop_topic('op39', force => true);
SELECT eventbus.drop_topic('op39.dlq');
DROP ROLE eb_reader39;
