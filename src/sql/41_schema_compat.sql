-- Schema compatibility check (docs/schema-compatibility.md).

CREATE FUNCTION eventbus.check_schema_compatibility(new_schema jsonb, old_schema jsonb,
                                                    compatibility text DEFAULT 'backward')
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'eb_check_schema_compatibility'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION eventbus.check_schema_compatibility(jsonb, jsonb, text) IS
  'Why new_schema may not replace old_schema under a compatibility mode (''backward'': the new schema reads every event valid under the old one; ''forward'': the old schema reads every event valid under the new one; ''full'': both; ''none''): one row per reason, no row when the change is compatible. Differences that cannot be decided are reasons too. Reads no table.';
