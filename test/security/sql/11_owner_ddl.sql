-- Storage: a topic owner tries to change the tables the extension relies
-- on: columns, constraints, triggers, rules, rows written behind publish().
-- None of it is allowed, and the views keep working for every role.
SET ROLE eb_attacker;
SELECT eventbus.create_topic('own.t', 2);
SELECT * FROM eventbus.publish('own.t', '{"n": 1}', partition => 0);
SELECT eventbus.create_group('own.g', 'own.t', 'earliest');
CREATE FUNCTION attacker.trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RETURN NULL;
END
$$;
ALTER TABLE eventbus_data."own.t" ADD COLUMN x integer;
ALTER TABLE eventbus_data."own.t" ALTER COLUMN value TYPE text;
ALTER TABLE eventbus_data."own.t$1" ALTER COLUMN value TYPE text;
ALTER TABLE eventbus_data."own.t" ADD CONSTRAINT small CHECK (position < 10);
ALTER TABLE eventbus_data."own.t$1" ADD CONSTRAINT small CHECK (position < 10);
ALTER TABLE eventbus_data."own.t" DROP CONSTRAINT use_eventbus_publish;
CREATE TRIGGER drop_all BEFORE INSERT ON eventbus_data."own.t$1"
  FOR EACH ROW EXECUTE FUNCTION attacker.trg();
CREATE TRIGGER drop_all BEFORE INSERT ON eventbus_data."own.t"
  FOR EACH ROW EXECUTE FUNCTION attacker.trg();
CREATE RULE no_insert AS ON INSERT TO eventbus_data."own.t$1" DO INSTEAD NOTHING;
ALTER TABLE eventbus_data."own.t$1" ENABLE ROW LEVEL SECURITY;
ALTER TABLE eventbus_data."own.t" OWNER TO eb_team_a;
-- rows written directly would bypass position assignment
INSERT INTO eventbus_data."own.t$1" (partition, position, event_id, created_at, value)
VALUES (0, 1, '00000000-0000-7000-8000-000000000000', '2026-01-01 00:00:00+00', '{}');
\set VERBOSITY terse
INSERT INTO eventbus_data."own.t" (partition, position, event_id, created_at, value)
VALUES (0, 1, '00000000-0000-7000-8000-000000000000', '2026-01-01 00:00:00+00', '{}');
\set VERBOSITY default
UPDATE eventbus_data."own.t" SET value = '{}';
DELETE FROM eventbus_data."own.t";
TRUNCATE eventbus_data."own.t$1";
-- what the owner does keep: publishing, reading, granting
SELECT * FROM eventbus.publish('own.t', '{"n": 2}', partition => 0);
SELECT partition, position, value FROM eventbus_data."own.t" ORDER BY 1, 2;
GRANT SELECT ON eventbus_data."own.t" TO eb_team_b;
RESET ROLE;

-- the tables are unchanged (NOT NULL constraints, in pg_constraint from
-- PostgreSQL 18 on, are not counted: columns are)
SELECT c.relname, c.relowner = e.extowner AS extension_owns, c.relhastriggers,
       c.relhasrules, c.relrowsecurity,
       (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0) AS columns,
       (SELECT count(*) FROM pg_constraint k
        WHERE k.conrelid = c.oid AND k.contype <> 'n') AS constraints,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) AS indexes
FROM pg_class c, pg_extension e
WHERE c.relnamespace = 'eventbus_data'::regnamespace AND c.relname LIKE 'own.t%'
  AND c.relkind = 'r' AND e.extname = 'pg_eventbus'
ORDER BY 1;

-- the views work for every role
SELECT topic, partitions, end_positions FROM eventbus.topics WHERE topic = 'own.t';
SELECT group_name, topic, partition, end_position FROM eventbus.consumer_lag
WHERE topic = 'own.t' ORDER BY partition;
SET ROLE eb_team_a;
SELECT count(*) >= 0 AS ok FROM eventbus.topics;
SELECT count(*) >= 0 AS ok FROM eventbus.consumer_lag;
SET ROLE eb_team_b;
SELECT topic, end_positions FROM eventbus.topics WHERE topic = 'own.t';
SELECT count(*) >= 0 AS ok FROM eventbus.consumer_lag;
SET ROLE eb_nobody;
SELECT count(*) >= 0 AS ok FROM eventbus.topics;
SELECT count(*) >= 0 AS ok FROM eventbus.consumer_lag;
SET ROLE eb_attacker;
SELECT topic, end_positions FROM eventbus.topics WHERE topic = 'own.t';
SELECT group_name, partition, end_position FROM eventbus.consumer_lag
WHERE topic = 'own.t' ORDER BY partition;
SELECT eventbus.delete_group('own.g');
SELECT eventbus.drop_topic('own.t', force => true);
DROP FUNCTION attacker.trg();
RESET ROLE;
