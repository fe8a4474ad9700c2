-- Schemas: registration, versions, the keyword subset (each accepted and
-- refused), error messages with JSON paths, batches, drop_schema, the
-- version header.

SELECT eventbus.create_topic('sk');

-- Registers a schema on topic sk (no compatibility check) and publishes
-- each value: 'ok' or the error message.
CREATE FUNCTION sv(s jsonb, vals jsonb[]) RETURNS TABLE (value jsonb, result text)
LANGUAGE plpgsql AS $$
DECLARE
  v jsonb;
BEGIN
  PERFORM eventbus.register_schema('sk', s, 'none');
  FOREACH v IN ARRAY vals LOOP
    value := v;
    BEGIN
      PERFORM eventbus.publish('sk', v);
      result := 'ok';
    EXCEPTION WHEN check_violation THEN
      result := SQLERRM;
    END;
    RETURN NEXT;
  END LOOP;
END $$;

-- type, including arrays of types; integer is a number without a fraction
SELECT * FROM sv('{"type": "integer"}', ARRAY['1', '1.0', '-7', '1.5', '"1"', 'null']::jsonb[]);
SELECT * FROM sv('{"type": "number"}', ARRAY['1', '2.5', '"x"', 'true']::jsonb[]);
SELECT * FROM sv('{"type": ["string", "null"]}', ARRAY['"a"', 'null', '0', '{}', '[]']::jsonb[]);
SELECT * FROM sv('{"type": "boolean"}', ARRAY['true', 'false', '0']::jsonb[]);
SELECT * FROM sv('{"type": "object"}', ARRAY['{}', '[]']::jsonb[]);
SELECT * FROM sv('{"type": "array"}', ARRAY['[]', '{}']::jsonb[]);
SELECT * FROM sv('{"type": "null"}', ARRAY['null', '"null"']::jsonb[]);

-- properties, required, additionalProperties (boolean and schema)
SELECT * FROM sv('{"type": "object", "required": ["id", "qty"],
                   "properties": {"id": {"type": "string"}, "qty": {"type": "integer"}}}',
  ARRAY['{"id": "a", "qty": 1}', '{"id": "a"}', '{"id": 1, "qty": 1}', '{"id": "a", "qty": 1, "x": 0}']::jsonb[]);
SELECT * FROM sv('{"properties": {"id": {}}, "additionalProperties": false}',
  ARRAY['{"id": 1}', '{"id": 1, "other key": 2}', '[1]']::jsonb[]);
SELECT * FROM sv('{"properties": {"id": {}}, "additionalProperties": {"type": "number"}}',
  ARRAY['{"id": "x", "a": 1, "b": 2.5}', '{"id": "x", "a": 1, "b": "2"}']::jsonb[]);

-- items, prefixItems
SELECT * FROM sv('{"items": {"type": "integer"}}', ARRAY['[]', '[1, 2]', '[1, "2"]', '{}']::jsonb[]);
SELECT * FROM sv('{"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false}',
  ARRAY['["a", 1]', '["a"]', '[1, 1]', '["a", 1, null]']::jsonb[]);
SELECT * FROM sv('{"prefixItems": [{"const": 1}]}', ARRAY['[1, "anything"]', '[2]']::jsonb[]);

-- enum, const (JSON equality: 1 equals 1.0, objects by content)
SELECT * FROM sv('{"enum": ["new", "paid", 1, null, {"a": [1]}]}',
  ARRAY['"new"', '"old"', '1.0', 'null', '{"a": [1]}', '{"a": [2]}', 'false']::jsonb[]);
SELECT * FROM sv('{"const": {"v": 1}}', ARRAY['{"v": 1}', '{"v": 1, "w": 2}']::jsonb[]);

-- numbers
SELECT * FROM sv('{"minimum": 1, "maximum": 10}', ARRAY['1', '10', '0', '10.5', '"no number"']::jsonb[]);
SELECT * FROM sv('{"exclusiveMinimum": 0, "exclusiveMaximum": 1}', ARRAY['0.5', '0', '1']::jsonb[]);
SELECT * FROM sv('{"multipleOf": 0.5}', ARRAY['2', '2.5', '2.25']::jsonb[]);

-- strings: lengths count characters, not bytes
SELECT * FROM sv('{"minLength": 2, "maxLength": 3}', ARRAY['"ab"', '"äöü"', '"a"', '"abcd"', '5']::jsonb[]);
SELECT * FROM sv('{"pattern": "^[A-Z]{2}-[0-9]+$"}', ARRAY['"AB-12"', '"ab-12"', '"xAB-1"']::jsonb[]);
-- unanchored, as in JSON Schema
SELECT * FROM sv('{"pattern": "[0-9]"}', ARRAY['"a1b"', '"ab"']::jsonb[]);

-- arrays
SELECT * FROM sv('{"minItems": 1, "maxItems": 2}', ARRAY['[1]', '[]', '[1, 2, 3]']::jsonb[]);
SELECT * FROM sv('{"uniqueItems": true}',
  ARRAY['[1, "1", [1], {"a": 1}]', '[1, 2, 1.0]', '[{"a": 1, "b": 2}, {"b": 2, "a": 1}]']::jsonb[]);

-- formats
SELECT * FROM sv('{"format": "date-time"}',
  ARRAY['"2024-02-29T13:45:00Z"', '"2024-02-29t13:45:00.123+02:00"', '"2023-02-29T13:45:00Z"',
        '"2024-01-01 13:45:00Z"', '"2024-01-01T25:00:00Z"', '"2024-01-01T10:00:00"']::jsonb[]);
SELECT * FROM sv('{"format": "date"}', ARRAY['"2024-12-31"', '"2024-13-01"', '"24-01-01"']::jsonb[]);
SELECT * FROM sv('{"format": "uuid"}',
  ARRAY['"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"', '"0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"']::jsonb[]);
SELECT * FROM sv('{"format": "email"}',
  ARRAY['"ana@example.com"', '"a.b+tag@sub.example.org"', '"no-at.example.com"', '"a@@b"',
        '"a b@example.com"', '"a@-bad.com"']::jsonb[]);
-- a format only applies to strings
SELECT * FROM sv('{"format": "date"}', ARRAY['42']::jsonb[]);

-- $ref to $defs, recursive schemas
SELECT * FROM sv('{"$defs": {"qty": {"type": "integer", "minimum": 1}},
                   "properties": {"a": {"$ref": "#/$defs/qty"}, "b": {"$ref": "#/$defs/qty"}}}',
  ARRAY['{"a": 1, "b": 2}', '{"a": 1, "b": 0}']::jsonb[]);
SELECT * FROM sv('{"type": "object", "properties": {"next": {"$ref": "#"}, "v": {"type": "integer"}}}',
  ARRAY['{"v": 1, "next": {"v": 2, "next": {"v": 3}}}', '{"v": 1, "next": {"next": {"v": "x"}}}']::jsonb[]);

-- anyOf, oneOf, allOf, not
SELECT * FROM sv('{"anyOf": [{"type": "string"}, {"minimum": 10}]}', ARRAY['"a"', '11', '5']::jsonb[]);
SELECT * FROM sv('{"oneOf": [{"type": "integer"}, {"minimum": 10}]}', ARRAY['5', '10.5', '11', '"x"']::jsonb[]);
SELECT * FROM sv('{"allOf": [{"type": "integer"}, {"minimum": 10}]}', ARRAY['11', '5']::jsonb[]);
SELECT * FROM sv('{"not": {"type": "null"}}', ARRAY['0', 'null']::jsonb[]);

-- boolean schemas, annotations
SELECT * FROM sv('true', ARRAY['{"any": "thing"}']::jsonb[]);
SELECT * FROM sv('false', ARRAY['{}']::jsonb[]);
SELECT * FROM sv('{"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:x",
                   "title": "t", "description": "d", "$comment": "c", "default": 1, "examples": [1],
                   "deprecated": false, "readOnly": true, "writeOnly": false, "type": "integer"}',
  ARRAY['1', '"1"']::jsonb[]);

-- paths in messages: nested objects, array indexes, keys that need quoting
SELECT * FROM sv('{"properties": {"items": {"items": {"properties": {"qty": {"minimum": 1}}}},
                                   "a b": {"properties": {"é\"": {"type": "string"}}}}}',
  ARRAY['{"items": [{"qty": 1}, {"qty": 2}, {"qty": 0}]}', '{"a b": {"é\"": 5}}']::jsonb[]);
-- long strings are shortened in messages
SELECT * FROM sv('{"maxLength": 3}', ARRAY[to_jsonb(repeat('x', 100))]);

-- the error itself (sv() above catches SQLSTATE 23514, check_violation, only)
SELECT eventbus.register_schema('sk', '{"properties": {"items": {"items": {"properties": {"qty": {"minimum": 1}}}}}}', 'none') AS version;
SELECT eventbus.publish('sk', '{"items": [{"qty": 1}, {"qty": 2}, {"qty": 0}]}');
-- a batch fails as a whole and names its element (counting from 1)
SELECT count(*) FROM eventbus.publish_batch('sk',
  ARRAY['{"items": []}', '{"items": [{"qty": 3}]}', '{"items": [{"qty": -1}]}']::jsonb[]);

-- keywords outside the subset, and malformed keywords, are refused at registration
SELECT eventbus.register_schema('sk', '{"if": {"type": "string"}}', 'none');
SELECT eventbus.register_schema('sk', '{"properties": {"a": {"dependentRequired": {}}}}', 'none');
SELECT eventbus.register_schema('sk', '{"items": [{"type": "string"}]}', 'none');
SELECT eventbus.register_schema('sk', '{"type": "int"}', 'none');
SELECT eventbus.register_schema('sk', '{"type": []}', 'none');
SELECT eventbus.register_schema('sk', '{"required": "id"}', 'none');
SELECT eventbus.register_schema('sk', '{"minLength": -1}', 'none');
SELECT eventbus.register_schema('sk', '{"minLength": 1.5}', 'none');
SELECT eventbus.register_schema('sk', '{"minimum": "1"}', 'none');
SELECT eventbus.register_schema('sk', '{"multipleOf": 0}', 'none');
SELECT eventbus.register_schema('sk', '{"uniqueItems": 1}', 'none');
SELECT eventbus.register_schema('sk', '{"pattern": "(unclosed"}', 'none');
SELECT eventbus.register_schema('sk', '{"format": "hostname"}', 'none');
SELECT eventbus.register_schema('sk', '{"enum": 1}', 'none');
SELECT eventbus.register_schema('sk', '{"anyOf": []}', 'none');
SELECT eventbus.register_schema('sk', '{"$ref": "https://example.com/s.json"}', 'none');
SELECT eventbus.register_schema('sk', '{"$ref": "#/$defs/missing"}', 'none');
SELECT eventbus.register_schema('sk', '{"$schema": "http://json-schema.org/draft-07/schema#"}', 'none');
SELECT eventbus.register_schema('sk', '{"title": 1}', 'none');
SELECT eventbus.register_schema('sk', '{"properties": {"a": 1}}', 'none');
SELECT eventbus.register_schema('sk', '[]', 'none');
-- a $ref cycle that never reaches a nested value
SELECT eventbus.register_schema('sk', '{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}', 'none');
SELECT eventbus.register_schema('sk', '{"allOf": [{"$ref": "#"}]}', 'none');
-- arguments
SELECT eventbus.register_schema('sk', '{}', 'sideways');
SELECT eventbus.register_schema('sk', NULL);
SELECT eventbus.register_schema('nope', '{}');
SELECT eventbus.drop_schema('nope');
DROP FUNCTION sv(jsonb, jsonb[]);
SELECT eventbus.drop_topic('sk');

-- Versions, the schemas view, drop_schema, and the version header
SELECT eventbus.create_topic('orders_s');
SELECT eventbus.publish('orders_s', '"no schema yet"');
-- (adding a typed property to an open object is not backward compatible:
-- old events may hold anything under its name, see 10_schema_compat; these
-- versions are registered with 'none')
SELECT eventbus.register_schema('orders_s', '{"type": "object", "properties": {"id": {"type": "integer"}}}');
-- the same schema again: the same version
SELECT eventbus.register_schema('orders_s', '{"properties": {"id": {"type": "integer"}}, "type": "object"}');
SELECT eventbus.register_schema('orders_s', '{"type": "object", "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}}', 'none');
SELECT topic, version, schema, compatibility, created_at IS NOT NULL AS has_created_at, dropped_at
  FROM eventbus.schemas WHERE topic = 'orders_s' ORDER BY version;
SELECT eventbus.publish('orders_s', '{"id": 1}', headers => '{"trace": "t1"}');
SELECT eventbus.publish('orders_s', '{"id": 2}');
SELECT count(*) FROM eventbus.publish_batch('orders_s', ARRAY['{"id": 3}', '{"id": 4}']::jsonb[],
                                           headers => ARRAY['{"h": "x"}', NULL]::jsonb[]);
-- a caller cannot set the version header
SELECT eventbus.publish('orders_s', '{"id": 5}', headers => '{"eventbus-schema-version": "1"}');
SELECT eventbus.publish('orders_s', '{"id": 5}', headers => '{"EventBus-Schema-Version": "1"}');
-- validation and the header take effect inside the registering transaction,
-- and vanish with its rollback
BEGIN;
SELECT eventbus.register_schema('orders_s', '{"type": "object", "properties": {"id": {"type": "integer"}, "note": {"type": "string"}, "tag": {"type": "string"}}}', 'none');
SELECT eventbus.publish('orders_s', '{"id": 6, "tag": "t"}');
SELECT eventbus.publish('orders_s', '{"id": 6, "tag": 1}');
ROLLBACK;
SELECT eventbus.publish('orders_s', '{"id": 7, "tag": 1}');
SELECT max(version) FROM eventbus.schemas WHERE topic = 'orders_s';
-- drop_schema stops validation; the versions are kept, marked dropped
SELECT eventbus.drop_schema('orders_s');
SELECT eventbus.drop_schema('orders_s');
SELECT version, dropped_at IS NOT NULL AS dropped FROM eventbus.schemas WHERE topic = 'orders_s' ORDER BY version;
SELECT eventbus.publish('orders_s', '{"id": "not checked"}');
-- a new registration continues the numbering, unchecked against dropped versions
SELECT eventbus.register_schema('orders_s', '{"type": "array"}');
SELECT eventbus.publish('orders_s', '[1]');
SELECT eventbus.publish('orders_s', '{"id": 8}');
-- a version number freed by a rollback names the next registration's schema
BEGIN;
SELECT eventbus.register_schema('orders_s', '{"type": "string"}', 'none');
SELECT eventbus.publish('orders_s', '"s"');
ROLLBACK;
SELECT eventbus.register_schema('orders_s', '{"type": "number"}', 'none');
SELECT eventbus.publish('orders_s', '"s"');
SELECT eventbus.publish('orders_s', '9');
SELECT position, value, headers FROM eventbus.read('orders_s', 0) ORDER BY position;
-- dropping the topic drops its schemas
SELECT eventbus.drop_topic('orders_s');
SELECT count(*) FROM eventbus.topic_schema;
