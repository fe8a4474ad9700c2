-- Storage: drop_topic() runs its DROP as the extension owner.  It must not
-- silently drop objects of other roles that depend on the topic's tables
-- (a view over the topic, over a segment, a function taking its row type):
-- it refuses and names them, and drops them only when asked to with
-- cascade => true, as DROP TABLE ... CASCADE would for a table's owner.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('dep.t');
SELECT * FROM eventbus.publish('dep.t', '{"n": 1}');
GRANT SELECT ON eventbus_data."dep.t" TO eb_team_b;
RESET ROLE;
CREATE SCHEMA team_b_views AUTHORIZATION eb_team_b;
SET ROLE eb_team_b;
CREATE VIEW team_b_views.dep_events AS SELECT position, value FROM eventbus_data."dep.t";
SELECT * FROM team_b_views.dep_events;
RESET ROLE;

-- the owner's plain drop refuses and names the other role's view
SET ROLE eb_team_a;
SELECT eventbus.drop_topic('dep.t');
RESET ROLE;
SELECT to_regclass('team_b_views.dep_events') IS NOT NULL AS view_kept,
       to_regclass('eventbus_data."dep.t"') IS NOT NULL AS topic_kept;

-- once the view is gone, the topic drops with its segments
SET ROLE eb_team_b;
DROP VIEW team_b_views.dep_events;
RESET ROLE;
SET ROLE eb_team_a;
SELECT eventbus.drop_topic('dep.t');
RESET ROLE;
SELECT count(*) AS tables_left FROM pg_class
WHERE relnamespace = 'eventbus_data'::regnamespace AND relname LIKE 'dep.t%';

-- a role with no grant at all can create a view over a segment (creating a
-- view checks no privilege); the drop refuses and names it too
SET ROLE eb_team_a;
SELECT eventbus.create_topic('dep.u');
RESET ROLE;
SET ROLE eb_attacker;
CREATE VIEW attacker.seg_view AS SELECT * FROM eventbus_data."dep.u$1";
-- the segments' row types cannot be used by other roles
CREATE FUNCTION attacker.takes_segment(eventbus_data."dep.u$1") RETURNS integer
LANGUAGE sql AS 'SELECT 1';
RESET ROLE;
SET ROLE eb_team_a;
SELECT eventbus.drop_topic('dep.u');
-- asked for, the drop takes the dependent view with it
SELECT eventbus.drop_topic('dep.u', cascade => true);
RESET ROLE;
SELECT to_regclass('attacker.seg_view') AS view_left,
       (SELECT count(*) FROM pg_class
         WHERE relnamespace = 'eventbus_data'::regnamespace AND relname LIKE 'dep.u%') AS tables_left,
       (SELECT count(*) FROM eventbus.topic WHERE topic = 'dep.u') AS topics_left;
DROP SCHEMA team_b_views;
