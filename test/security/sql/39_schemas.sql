-- Schemas: only the topic's owner (or a role with its privileges) registers
-- and drops them; the internal statements never run the caller's code as
-- the extension owner; no caller can forge the version header; hostile
-- schemas hit documented limits (size, depth, enum length, pattern length
-- and complexity, $ref expansions) instead of using up the backend.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('s39', 1);
GRANT INSERT, SELECT ON eventbus_data."s39" TO eb_team_b;
SELECT eventbus.register_schema('s39', '{"type": "object", "required": ["id"]}');
-- a publisher, the attacker and a role without grants cannot register or drop
SET ROLE eb_team_b;
SELECT eventbus.register_schema('s39', 'true', 'none');
SELECT eventbus.drop_schema('s39');
SELECT eventbus.publish('s39', '{"no": "id"}');
SELECT topic, version FROM eventbus.schemas;
SET ROLE eb_attacker;
SELECT eventbus.register_schema('s39', 'true', 'none');
SELECT eventbus.drop_schema('s39');
SELECT topic, version FROM eventbus.schemas;
SET ROLE eb_nobody;
SELECT eventbus.register_schema('s39', 'true', 'none');
SELECT topic, version FROM eventbus.schemas;
-- nor write the catalog behind the functions
SET ROLE eb_attacker;
SELECT count(*) FROM eventbus.topic_schema;
INSERT INTO eventbus.topic_schema (topic_id, version, schema, compatibility)
  SELECT topic_id, 99, 'true', 'none' FROM eventbus.topic WHERE topic = 's39';
UPDATE eventbus.topic_schema SET dropped_at = now();
-- a forged version header is refused
SET ROLE eb_team_b;
SELECT eventbus.publish('s39', '{"id": 1}', headers => '{"eventbus-schema-version": "7"}');
SELECT count(*) FROM eventbus.publish_batch('s39', ARRAY['{"id": 1}']::jsonb[],
  headers => ARRAY['{"eventbus-schema-version": "7"}']::jsonb[]);
SELECT eventbus.publish('s39', '{"id": 1}', headers => '{"x": "y"}');
SELECT headers FROM eventbus.read('s39', 0);

-- An owner whose search_path puts its own "=" for integers first: the
-- internal statements of register_schema() and drop_schema() run with a
-- pinned search_path, so its function never runs (as the extension owner).
SET ROLE eb_attacker;
SELECT eventbus.create_topic('s39.att', 1);
CREATE TABLE attacker.calls (who text);
CREATE FUNCTION attacker.int_eq(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO attacker.calls VALUES (current_user);
  RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR attacker.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = attacker.int_eq);
SET search_path = attacker, pg_catalog;
SELECT eventbus.register_schema('s39.att', '{"type": "object"}');
SELECT eventbus.register_schema('s39.att', '{"type": "object", "properties": {"a": {}}}');
SELECT eventbus.drop_schema('s39.att');
RESET search_path;
SELECT count(*) AS attacker_operator_calls FROM attacker.calls;

-- Hostile schemas, each limit (docs/schemas.md):
-- size: at most 65536 bytes of jsonb
SELECT eventbus.register_schema('s39.att',
  jsonb_build_object('description', repeat('x', 70000)), 'none');
-- depth: at most 32 nested schemas
SELECT eventbus.register_schema('s39.att',
  (SELECT repeat('{"not": ', 40) || '{}' || repeat('}', 40))::jsonb, 'none');
SELECT eventbus.register_schema('s39.att',
  (SELECT repeat('{"items": ', 32) || '{}' || repeat('}', 32))::jsonb, 'none') > 0 AS depth_32_accepted;
-- enum: at most 1000 values
SELECT eventbus.register_schema('s39.att',
  jsonb_build_object('enum', (SELECT jsonb_agg(i) FROM generate_series(1, 1001) i)), 'none');
-- pattern: at most 1000 characters
SELECT eventbus.register_schema('s39.att',
  jsonb_build_object('pattern', repeat('a', 1001)), 'none');
-- pattern: the regex engine's own limit on a pattern's complexity
SELECT eventbus.register_schema('s39.att',
  '{"pattern": "((((((((((a{1,100}){1,100}){1,100}){1,100}){1,100}){1,100}){1,100}){1,100}){1,100}){1,100})"}', 'none');
-- nested $ref expansions: at most 64 (a recursive schema, a deep event)
SELECT eventbus.register_schema('s39.att',
  '{"type": "object", "properties": {"next": {"$ref": "#"}}}', 'none');
SELECT eventbus.publish('s39.att',
  (SELECT repeat('{"next": ', 60) || '{}' || repeat('}', 60))::jsonb) IS NOT NULL AS depth_60_accepted;
SELECT eventbus.publish('s39.att',
  (SELECT repeat('{"next": ', 70) || '{}' || repeat('}', 70))::jsonb);
-- $ref expansions per event: at most 100000 (each level doubles the work)
SELECT eventbus.register_schema('s39.att',
  (SELECT jsonb_build_object('$defs',
            jsonb_object_agg('d' || i, CASE WHEN i = 20 THEN '{}'::jsonb
              ELSE jsonb_build_object('allOf', jsonb_build_array(
                     jsonb_build_object('$ref', '#/$defs/d' || (i + 1)),
                     jsonb_build_object('$ref', '#/$defs/d' || (i + 1)))) END),
          '$ref', '#/$defs/d1')
   FROM generate_series(1, 20) i), 'none');
SELECT eventbus.publish('s39.att', '1');
-- a $ref cycle that never reaches a nested value is refused at registration
SELECT eventbus.register_schema('s39.att', '{"$defs": {"a": {"not": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"}', 'none');
-- the topic works as before
SELECT eventbus.drop_schema('s39.att');
SELECT eventbus.publish('s39.att', '"fine"') IS NOT NULL AS published;
SELECT eventbus.drop_topic('s39.att');
DROP OPERATOR attacker.= (integer, integer);
DROP FUNCTION attacker.int_eq(integer, integer);
DROP TABLE attacker.calls;
SET ROLE eb_team_a;
SELECT eventbus.drop_topic('s39');
RESET ROLE;
