-- Consumers: a group's lag and status are shown to roles with the
-- privileges of its owner, to members of pg_monitor and to superusers.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c35', 1);
GRANT SELECT ON eventbus_data.c35 TO eb_team_b;
SELECT eventbus.create_group('g35a', 'c35', 'earliest');
SET ROLE eb_team_b;
SELECT eventbus.create_group('g35b', 'c35', 'earliest', dead_letter_topic => 'c35b.dlq');
-- each team sees its own group only
SELECT group_name, partition FROM eventbus.consumer_lag WHERE topic = 'c35' ORDER BY 1;
SELECT partition FROM eventbus.group_status('g35a', 'c35');
SET ROLE eb_team_a;
SELECT group_name, partition FROM eventbus.consumer_lag WHERE topic = 'c35' ORDER BY 1;
SET ROLE eb_nobody;
SELECT count(*) FROM eventbus.consumer_lag;
SELECT partition FROM eventbus.group_status('g35a', 'c35');
RESET ROLE;
-- pg_monitor and superusers see every group
CREATE ROLE eb_monitor IN ROLE pg_monitor;
SET ROLE eb_monitor;
SELECT group_name, partition FROM eventbus.consumer_lag WHERE topic = 'c35' ORDER BY 1;
SELECT partition FROM eventbus.group_status('g35b', 'c35');
RESET ROLE;
SELECT group_name, partition FROM eventbus.consumer_lag WHERE topic = 'c35' ORDER BY 1;
DROP ROLE eb_monitor;
