-- Storage: a topic creator tries to run its own code as the extension owner
-- through an expression index on a topic's tables, evaluated when an event
-- is published or dead-lettered.
SET ROLE eb_attacker;
SELECT eventbus.create_topic('atk.src');
SELECT eventbus.create_topic('atk.dlq');
-- as the attacker itself this fails quietly; as a superuser it succeeds
CREATE FUNCTION attacker.escalate_now() RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  ALTER ROLE eb_attacker SUPERUSER;
  RETURN 1;
EXCEPTION WHEN insufficient_privilege THEN
  RETURN 0;
END
$$;
-- index expressions need an immutable function: it calls the volatile one
CREATE FUNCTION attacker.escalate(jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN attacker.escalate_now();
END
$$;
-- an index on the segment events are written to, and on the parent table
CREATE INDEX atk_seg_idx ON eventbus_data."atk.dlq$1" (attacker.escalate(value));
CREATE INDEX atk_parent_idx ON eventbus_data."atk.dlq" (attacker.escalate(value));
CREATE INDEX atk_src_idx ON eventbus_data."atk.src$1" (attacker.escalate(value));
-- publishing runs as the caller; a nack with max_attempts 1 dead-letters
SELECT * FROM eventbus.publish('atk.src', '{"n": 1}', partition => 0);
SELECT eventbus.create_group('atk.g', 'atk.src', 'earliest', max_attempts => 1,
                             dead_letter_topic => 'atk.dlq');
BEGIN;
SELECT position, value FROM eventbus.poll('atk.g', 'atk.src', 10);
SELECT eventbus.nack('atk.g', 'atk.src', 0, 0, reason => 'boom');
COMMIT;
SELECT position, value FROM eventbus.read('atk.dlq', 0);
RESET ROLE;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'eb_attacker';
-- no index other than the extension's own on the attacker's topics
SELECT c.relname AS "table", count(*) AS indexes
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE c.relnamespace = 'eventbus_data'::regnamespace AND c.relname LIKE 'atk.%'
GROUP BY 1 ORDER BY 1;
SET ROLE eb_attacker;
SELECT eventbus.delete_group('atk.g');
SELECT eventbus.drop_topic('atk.src');
SELECT eventbus.drop_topic('atk.dlq');
DROP FUNCTION attacker.escalate(jsonb);
DROP FUNCTION attacker.escalate_now();
RESET ROLE;
