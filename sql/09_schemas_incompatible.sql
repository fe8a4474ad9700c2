-- Schemas: an incompatible version is refused (SQLSTATE 42P17,
-- invalid_object_definition) with the reasons in the detail, and no version
-- is added.  Under 'backward' the new version must read every event written
-- under the previous one, so making an optional property required is
-- refused.  The compatibility rules themselves are tested with the checker
-- (schema_compat.c); this file tests that registration applies it.
-- expected/09_schemas_incompatible_1.out is the output while schema_compat.c is a
-- placeholder that finds every change compatible.
SELECT eventbus.create_topic('compat_s');
SELECT eventbus.register_schema('compat_s', '{"type": "object", "properties": {"qty": {"type": "integer"}}}');
DO $$
DECLARE
  d text;
BEGIN
  PERFORM eventbus.register_schema('compat_s',
    '{"type": "object", "properties": {"qty": {"type": "integer"}}, "required": ["qty"]}', 'backward');
  RAISE NOTICE 'accepted';
EXCEPTION WHEN invalid_object_definition THEN
  GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
  RAISE NOTICE 'refused: %', SQLERRM;
  RAISE NOTICE 'the detail names the property: %', d LIKE '%qty%';
END $$;
SELECT max(version) FROM eventbus.schemas WHERE topic = 'compat_s';
-- with 'none' the same version is accepted
SELECT eventbus.register_schema('compat_s',
  '{"type": "object", "properties": {"qty": {"type": "integer"}}, "required": ["qty"]}', 'none');
SELECT eventbus.drop_topic('compat_s');
