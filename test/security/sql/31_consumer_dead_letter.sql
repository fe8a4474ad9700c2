-- Consumers: nack() checks the right to publish to the dead-letter topic
-- when it sends an event there, not only when the group was created, and
-- publishes there as the calling role.
SET ROLE eb_team_b;
SELECT eventbus.create_topic('c31.dead', 1);
GRANT INSERT ON eventbus_data."c31.dead" TO eb_team_a;
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c31', 1);
SELECT eventbus.create_group('g31', 'c31', 'earliest', max_attempts => 1,
                             dead_letter_topic => 'c31.dead');
SELECT count(*) FROM eventbus.publish_batch('c31', array_fill('{"n": 1}'::jsonb, ARRAY[2]));
-- allowed: the event goes to team b's topic
BEGIN;
SELECT position FROM eventbus.poll('g31', 'c31', 1);
SELECT eventbus.nack('g31', 'c31', 0, 0, reason => 'bad');
SELECT eventbus.commit('g31', 'c31', 0, 0);
COMMIT;
-- team b takes the right back: nack() no longer writes there
SET ROLE eb_team_b;
REVOKE INSERT ON eventbus_data."c31.dead" FROM eb_team_a;
SELECT count(*) FROM eventbus.read('c31.dead', 0);
SET ROLE eb_team_a;
BEGIN;
SELECT position FROM eventbus.poll('g31', 'c31', 1);
SELECT eventbus.nack('g31', 'c31', 0, 1, reason => 'bad');
ROLLBACK;
SET ROLE eb_team_b;
SELECT count(*) FROM eventbus.read('c31.dead', 0);
-- nothing changed for the group: the event is still to be consumed
SET ROLE eb_team_a;
SELECT committed_position, pending_retries FROM eventbus.group_status('g31', 'c31');
RESET ROLE;
