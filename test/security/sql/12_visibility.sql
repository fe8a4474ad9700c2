-- Storage: who sees which topic in the topics view and topic_partitions().
-- A role sees a topic it may read or publish to, a topic whose owner's
-- privileges it has, and every topic as a member of pg_monitor.
CREATE ROLE eb_vis_monitor IN ROLE pg_monitor;
CREATE ROLE eb_vis_lead IN ROLE eb_team_a;
SET ROLE eb_team_a;
SELECT eventbus.create_topic('vis.a');
SELECT eventbus.create_topic('vis.a.private');
GRANT INSERT ON eventbus_data."vis.a" TO eb_team_b;
RESET ROLE;
SET ROLE eb_team_b;
SELECT eventbus.create_topic('vis.b');
GRANT SELECT ON eventbus_data."vis.b" TO eb_nobody;
RESET ROLE;

-- a superuser
SELECT topic FROM eventbus.topics WHERE topic LIKE 'vis.%' ORDER BY 1;
SET ROLE eb_team_a;
SELECT topic, current_user FROM eventbus.topics WHERE topic LIKE 'vis.%' ORDER BY 1;
SET ROLE eb_team_b;
SELECT topic, current_user FROM eventbus.topics WHERE topic LIKE 'vis.%' ORDER BY 1;
SET ROLE eb_nobody;
SELECT topic, current_user FROM eventbus.topics WHERE topic LIKE 'vis.%' ORDER BY 1;
SET ROLE eb_attacker;
SELECT topic, current_user FROM eventbus.topics WHERE topic LIKE 'vis.%' ORDER BY 1;
SET ROLE eb_vis_monitor;
SELECT topic, current_user FROM eventbus.topics WHERE topic LIKE 'vis.%' ORDER BY 1;
SET ROLE eb_vis_lead;
SELECT topic, current_user FROM eventbus.topics WHERE topic LIKE 'vis.%' ORDER BY 1;
RESET ROLE;

-- topic_partitions() follows the same rule
SET ROLE eb_attacker;
SELECT * FROM eventbus.topic_partitions('vis.a');
\echo :LAST_ERROR_SQLSTATE
SET ROLE eb_nobody;
SELECT * FROM eventbus.topic_partitions('vis.a.private');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventbus.topic_partitions('vis.b');
SET ROLE eb_team_b;
SELECT * FROM eventbus.topic_partitions('vis.a');
SELECT * FROM eventbus.topic_partitions('vis.a.private');
\echo :LAST_ERROR_SQLSTATE
SET ROLE eb_vis_lead;
SELECT * FROM eventbus.topic_partitions('vis.a.private');
SET ROLE eb_vis_monitor;
SELECT * FROM eventbus.topic_partitions('vis.a.private');
RESET ROLE;

SET ROLE eb_team_a;
SELECT eventbus.drop_topic('vis.a');
SELECT eventbus.drop_topic('vis.a.private');
SET ROLE eb_team_b;
SELECT eventbus.drop_topic('vis.b');
RESET ROLE;
DROP ROLE eb_vis_monitor, eb_vis_lead;
