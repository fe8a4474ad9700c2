-- Storage: any role may hold CREATE on schema eventbus_data (the right to
-- create topics) and so create relations there.  One named like the next
-- segment of another team's topic ("<topic>$<n>") must not stop that
-- topic's maintenance: the segment gets another free name.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('sq.t', 1, '1 hour');
SELECT * FROM eventbus.publish('sq.t', '{"n": 1}');
RESET ROLE;
SET ROLE eb_attacker;
CREATE TABLE eventbus_data."sq.t$3" (x integer);
CREATE VIEW eventbus_data."sq.t$4" AS SELECT 1 AS x;
RESET ROLE;

-- age the current segment so that maintenance rotates it (test shortcut)
UPDATE eventbus.segment SET activated_at = now() - interval '2 hours'
WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'sq.t') AND segment = 1;
SET ROLE eb_team_a;
SELECT topic, action, segment FROM eventbus.run_maintenance() WHERE topic = 'sq.t';
SELECT * FROM eventbus.publish('sq.t', '{"n": 2}');
RESET ROLE;
UPDATE eventbus.segment SET activated_at = now() - interval '2 hours'
WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'sq.t') AND segment = 2;
-- retention counts from sealing: segment 1 was sealed long ago (test shortcut)
UPDATE eventbus.segment SET sealed_at = now() - interval '2 hours'
WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'sq.t') AND segment = 1;
SET ROLE eb_team_a;
SELECT topic, action, segment FROM eventbus.run_maintenance() WHERE topic = 'sq.t';
SELECT position, value FROM eventbus.read('sq.t', 0);
RESET ROLE;

-- the segments are the extension owner's, the squatters untouched
SELECT s.segment, c.relname, c.relowner = e.extowner AS extension_owns
FROM eventbus.segment s JOIN pg_class c ON c.oid = s.table_oid, pg_extension e
WHERE s.topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'sq.t')
  AND e.extname = 'pg_eventbus'
ORDER BY 1;
SELECT relname, relkind, relowner::regrole FROM pg_class
WHERE relnamespace = 'eventbus_data'::regnamespace AND relowner = 'eb_attacker'::regrole
ORDER BY 1;

SET ROLE eb_team_a;
SELECT eventbus.drop_topic('sq.t');
RESET ROLE;
SELECT relname FROM pg_class
WHERE relnamespace = 'eventbus_data'::regnamespace AND relname LIKE 'sq.t%' ORDER BY 1;
SET ROLE eb_attacker;
DROP TABLE eventbus_data."sq.t$3";
DROP VIEW eventbus_data."sq.t$4";
RESET ROLE;
