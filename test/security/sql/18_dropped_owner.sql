-- Storage: the owner of a topic is dropped (DROP OWNED BY, then DROP ROLE).
-- DROP ROLE alone is refused (the role holds privileges on the topic's
-- table); DROP OWNED BY revokes them, with the grants it made.  The topic
-- is then owned by no role: the views and functions keep working for every
-- role, no other role gains rights on it, and a superuser can drop it.
CREATE ROLE eb_leaving;
GRANT CREATE ON SCHEMA eventbus_data TO eb_leaving;
SET ROLE eb_leaving;
SELECT eventbus.create_topic('gone.t');
SELECT * FROM eventbus.publish('gone.t', '{"n": 1}');
GRANT SELECT, INSERT ON eventbus_data."gone.t" TO eb_team_b;
RESET ROLE;
\set VERBOSITY terse
DROP ROLE eb_leaving;
\set VERBOSITY default
DROP OWNED BY eb_leaving;
DROP ROLE eb_leaving;

SELECT topic, owner::oid <> 0 AS has_owner_oid,
       pg_get_userbyid(owner) LIKE 'unknown%' AS owner_gone
FROM eventbus.topic WHERE topic = 'gone.t';
SELECT topic, end_positions FROM eventbus.topics WHERE topic = 'gone.t';
SET ROLE eb_team_b;
SELECT count(*) FROM eventbus.topics WHERE topic = 'gone.t';
SELECT * FROM eventbus.publish('gone.t', '{"n": 2}');
SELECT eventbus.alter_topic('gone.t', partitions => 2);
SELECT eventbus.drop_topic('gone.t');
RESET ROLE;
SET ROLE eb_nobody;
SELECT count(*) >= 0 AS ok FROM eventbus.topics;
SELECT count(*) >= 0 AS ok FROM eventbus.consumer_lag;
RESET ROLE;
SELECT * FROM eventbus.topic_partitions('gone.t');
SELECT eventbus.drop_topic('gone.t');
