-- Schema compatibility: eventbus.check_schema_compatibility(new, old, mode).
-- Each evolution below is a change from old_schema to new_schema, checked in
-- a mode, with the verdict expected under Confluent Schema Registry's JSON
-- Schema rules (the rule name of its Difference.Type where one applies) or,
-- where this extension is stricter or more precise, the reason in a comment.

CREATE TEMP TABLE evolution (
    id         int PRIMARY KEY,
    rule       text NOT NULL,
    mode       text NOT NULL,
    old_schema jsonb NOT NULL,
    new_schema jsonb NOT NULL,
    expect     text NOT NULL CHECK (expect IN ('accepted', 'refused'))
);

INSERT INTO evolution VALUES
-- type
(1, 'TYPE_EXTENDED', 'backward', '{"type":"integer"}', '{"type":"number"}', 'accepted'),
(2, 'TYPE_NARROWED', 'backward', '{"type":"number"}', '{"type":"integer"}', 'refused'),
(3, 'TYPE_CHANGED', 'backward', '{"type":"object","properties":{"items":{"type":"integer"}}}',
    '{"type":"object","properties":{"items":{"type":"string"}}}', 'refused'),
(4, 'TYPE_EXTENDED', 'backward', '{"type":"string"}', '{"type":["string","null"]}', 'accepted'),
(5, 'TYPE_EXTENDED (forward: old consumers get numbers)', 'forward', '{"type":"integer"}', '{"type":"number"}', 'refused'),
(6, 'TYPE_NARROWED (forward)', 'forward', '{"type":["string","null"]}', '{"type":"string"}', 'accepted'),
(7, 'integer-valued number: multipleOf 1 makes number an integer', 'backward',
    '{"type":"number","multipleOf":1}', '{"type":"integer"}', 'accepted'),
-- required
(10, 'REQUIRED_ATTRIBUTE_ADDED', 'backward',
    '{"type":"object","properties":{"qty":{"type":"integer"}}}',
    '{"type":"object","properties":{"qty":{"type":"integer"}},"required":["qty"]}', 'refused'),
(11, 'REQUIRED_ATTRIBUTE_REMOVED', 'backward',
    '{"type":"object","properties":{"qty":{"type":"integer"}},"required":["qty"]}',
    '{"type":"object","properties":{"qty":{"type":"integer"}}}', 'accepted'),
(12, 'REQUIRED_ATTRIBUTE_REMOVED (forward)', 'forward',
    '{"type":"object","properties":{"qty":{"type":"integer"}},"required":["qty"]}',
    '{"type":"object","properties":{"qty":{"type":"integer"}}}', 'refused'),
-- Confluent accepts REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED; events are
-- validated, never filled in with defaults, so old events without it fail
(13, 'REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED (stricter)', 'backward',
    '{"type":"object","properties":{"qty":{"type":"integer","default":1}}}',
    '{"type":"object","properties":{"qty":{"type":"integer","default":1}},"required":["qty"]}', 'refused'),
(14, 'REQUIRED_ATTRIBUTE_ADDED (forward: new events always have it)', 'forward',
    '{"type":"object","properties":{"qty":{"type":"integer"}}}',
    '{"type":"object","properties":{"qty":{"type":"integer"}},"required":["qty"]}', 'accepted'),
-- properties and content models
(20, 'PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"}}}',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"}}}', 'refused'),
(21, 'PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"}}}',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"description":"free text"}}}', 'accepted'),
(22, 'OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false}',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"}},"additionalProperties":false}', 'accepted'),
(23, 'REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false}',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"}},"required":["note"],"additionalProperties":false}', 'refused'),
(24, 'PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"}}}',
    '{"type":"object","properties":{"id":{"type":"integer"}}}', 'accepted'),
(25, 'PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"}},"additionalProperties":false}',
    '{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false}', 'refused'),
(26, 'PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"},"legacy":false},"additionalProperties":false}',
    '{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false}', 'accepted'),
(27, 'PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL', 'backward',
    '{"type":"object","additionalProperties":{"type":"string","maxLength":10}}',
    '{"type":"object","properties":{"code":{"type":"string"}},"additionalProperties":{"type":"string","maxLength":10}}', 'accepted'),
(28, 'PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL', 'backward',
    '{"type":"object","additionalProperties":{"type":"string"}}',
    '{"type":"object","properties":{"n":{"type":"integer"}},"additionalProperties":{"type":"string"}}', 'refused'),
(29, 'ADDITIONAL_PROPERTIES_ADDED', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false}',
    '{"type":"object","properties":{"id":{"type":"integer"}}}', 'accepted'),
(30, 'ADDITIONAL_PROPERTIES_REMOVED', 'backward',
    '{"type":"object","properties":{"id":{"type":"integer"}}}',
    '{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false}', 'refused'),
(31, 'ADDITIONAL_PROPERTIES_NARROWED', 'backward',
    '{"type":"object"}', '{"type":"object","additionalProperties":{"type":"string"}}', 'refused'),
(32, 'ADDITIONAL_PROPERTIES_EXTENDED', 'backward',
    '{"type":"object","additionalProperties":{"type":"string"}}', '{"type":"object"}', 'accepted'),
(33, 'TYPE_CHANGED (nested: the path is named)', 'backward',
    '{"type":"object","properties":{"order":{"type":"object","properties":{"qty":{"type":"integer"}},"required":["qty"]}}}',
    '{"type":"object","properties":{"order":{"type":"object","properties":{"qty":{"type":"string"}},"required":["qty","sku"]}}}', 'refused'),
(34, 'OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL (forward: old closed model refuses it)', 'full',
    '{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false}',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"}},"additionalProperties":false}', 'refused'),
(35, 'PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL (forward)', 'forward',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"}},"additionalProperties":false}',
    '{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false}', 'accepted'),
(36, 'PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL (forward: the old model takes any value)', 'forward',
    '{"type":"object","properties":{"id":{"type":"integer"}}}',
    '{"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string"}}}', 'accepted'),
-- enum and const
(40, 'ENUM_ARRAY_EXTENDED', 'backward',
    '{"properties":{"status":{"enum":["new","paid"]}}}', '{"properties":{"status":{"enum":["new","paid","shipped"]}}}', 'accepted'),
(41, 'ENUM_ARRAY_NARROWED', 'backward',
    '{"properties":{"status":{"enum":["new","paid","x"]}}}', '{"properties":{"status":{"enum":["new","paid"]}}}', 'refused'),
(42, 'ENUM_ARRAY_EXTENDED (forward)', 'forward',
    '{"properties":{"status":{"enum":["new","paid"]}}}', '{"properties":{"status":{"enum":["new","paid","shipped"]}}}', 'refused'),
(43, 'ENUM_ARRAY_CHANGED (enum added to a string)', 'backward',
    '{"type":"string"}', '{"type":"string","enum":["a","b"]}', 'refused'),
(44, 'enum removed (any string now)', 'backward',
    '{"type":"string","enum":["a","b"]}', '{"type":"string"}', 'accepted'),
(45, 'const widened to an enum', 'backward', '{"const":"v1"}', '{"enum":["v1","v2"]}', 'accepted'),
(46, 'enum values checked against the new constraints', 'backward',
    '{"type":"string","enum":["ab","abcdef"]}', '{"type":"string","maxLength":3}', 'refused'),
(47, 'boolean: every value of the old type listed', 'backward',
    '{"type":["boolean","null"]}', '{"enum":[true,false,null]}', 'accepted'),
(48, 'enum values under a pattern (decided with the regex)', 'backward',
    '{"enum":["A-1","B-2"]}', '{"type":"string","pattern":"^[A-Z]-[0-9]$"}', 'accepted'),
-- numbers
(50, 'MAXIMUM_INCREASED', 'backward', '{"type":"integer","maximum":100}', '{"type":"integer","maximum":200}', 'accepted'),
(51, 'MAXIMUM_DECREASED', 'backward', '{"type":"integer","maximum":100}', '{"type":"integer","maximum":50}', 'refused'),
(52, 'MINIMUM_ADDED', 'backward', '{"type":"integer"}', '{"type":"integer","minimum":1}', 'refused'),
(53, 'MINIMUM_REMOVED', 'backward', '{"type":"integer","minimum":1}', '{"type":"integer"}', 'accepted'),
(54, 'EXCLUSIVE_MINIMUM_INCREASED', 'backward', '{"type":"number","exclusiveMinimum":0}', '{"type":"number","exclusiveMinimum":1}', 'refused'),
-- Confluent refuses (EXCLUSIVE_MINIMUM_ADDED); the old minimum implies the new bound
(55, 'EXCLUSIVE_MINIMUM_ADDED (implied: more precise)', 'backward',
    '{"type":"number","minimum":1}', '{"type":"number","exclusiveMinimum":0}', 'accepted'),
(56, 'MINIMUM_INCREASED (minimum to exclusiveMinimum at the same value)', 'backward',
    '{"type":"number","minimum":0}', '{"type":"number","exclusiveMinimum":0}', 'refused'),
(57, 'MULTIPLE_OF_REDUCED', 'backward', '{"type":"integer","multipleOf":10}', '{"type":"integer","multipleOf":5}', 'accepted'),
(58, 'MULTIPLE_OF_EXPANDED', 'backward', '{"type":"integer","multipleOf":5}', '{"type":"integer","multipleOf":10}', 'refused'),
(59, 'MULTIPLE_OF_ADDED (1 on integers holds already)', 'backward', '{"type":"integer"}', '{"type":"integer","multipleOf":1}', 'accepted'),
(60, 'MULTIPLE_OF_ADDED', 'backward', '{"type":"number"}', '{"type":"number","multipleOf":0.5}', 'refused'),
(61, 'EXCLUSIVE_MAXIMUM_REMOVED (forward)', 'forward', '{"type":"number","exclusiveMaximum":10}', '{"type":"number"}', 'refused'),
-- Confluent reports MINIMUM_ADDED; integers above 0 are at least 1
(62, 'MINIMUM_ADDED (implied for integers: more precise)', 'backward',
    '{"type":"integer","exclusiveMinimum":0}', '{"type":"integer","minimum":1}', 'accepted'),
-- strings
(70, 'MAX_LENGTH_DECREASED', 'backward',
    '{"properties":{"name":{"type":"string","maxLength":100}}}', '{"properties":{"name":{"type":"string","maxLength":50}}}', 'refused'),
(71, 'MAX_LENGTH_INCREASED', 'backward', '{"type":"string","maxLength":50}', '{"type":"string","maxLength":100}', 'accepted'),
(72, 'MIN_LENGTH_INCREASED', 'backward', '{"type":"string","minLength":1}', '{"type":"string","minLength":3}', 'refused'),
(73, 'MIN_LENGTH_DECREASED', 'backward', '{"type":"string","minLength":3}', '{"type":"string","minLength":1}', 'accepted'),
(74, 'PATTERN_ADDED', 'backward', '{"type":"string"}', '{"type":"string","pattern":"^[a-z]+$"}', 'refused'),
(75, 'PATTERN_REMOVED', 'backward', '{"type":"string","pattern":"^[a-z]+$"}', '{"type":"string"}', 'accepted'),
(76, 'PATTERN_CHANGED', 'backward', '{"type":"string","pattern":"^[a-z]+$"}', '{"type":"string","pattern":"^[a-z0-9]+$"}', 'refused'),
(77, 'format added', 'backward', '{"type":"string"}', '{"type":"string","format":"email"}', 'refused'),
(78, 'format removed', 'backward', '{"type":"string","format":"uuid"}', '{"type":"string"}', 'accepted'),
-- arrays
(80, 'MAX_ITEMS_DECREASED', 'backward', '{"type":"array","maxItems":10}', '{"type":"array","maxItems":5}', 'refused'),
(81, 'MIN_ITEMS_DECREASED', 'backward', '{"type":"array","minItems":2}', '{"type":"array","minItems":1}', 'accepted'),
(82, 'UNIQUE_ITEMS_ADDED', 'backward', '{"type":"array"}', '{"type":"array","uniqueItems":true}', 'refused'),
(83, 'UNIQUE_ITEMS_REMOVED', 'backward', '{"type":"array","uniqueItems":true}', '{"type":"array"}', 'accepted'),
(84, 'TYPE_CHANGED (items)', 'backward',
    '{"properties":{"tags":{"type":"array","items":{"type":"integer"}}}}',
    '{"properties":{"tags":{"type":"array","items":{"type":"string"}}}}', 'refused'),
(85, 'ITEM_ADDED_TO_CLOSED_CONTENT_MODEL', 'backward',
    '{"type":"array","prefixItems":[{"type":"string"}],"items":false}',
    '{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}', 'accepted'),
(86, 'ITEM_ADDED_TO_OPEN_CONTENT_MODEL', 'backward',
    '{"type":"array","prefixItems":[{"type":"string"}]}',
    '{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}]}', 'refused'),
(87, 'ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL', 'backward',
    '{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}',
    '{"type":"array","prefixItems":[{"type":"string"}],"items":false}', 'refused'),
(88, 'ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL', 'backward',
    '{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}]}',
    '{"type":"array","prefixItems":[{"type":"string"}]}', 'accepted'),
-- anyOf, oneOf, allOf, not
(90, 'SUM_TYPE_EXTENDED (anyOf)', 'backward',
    '{"anyOf":[{"type":"string"},{"type":"integer"}]}', '{"anyOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]}', 'accepted'),
(91, 'SUM_TYPE_NARROWED (anyOf)', 'backward',
    '{"anyOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]}', '{"anyOf":[{"type":"string"},{"type":"integer"}]}', 'refused'),
(92, 'SUM_TYPE_EXTENDED (oneOf, a branch of another type)', 'backward',
    '{"oneOf":[{"type":"string"},{"type":"integer"}]}', '{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"boolean"}]}', 'accepted'),
(93, 'SUM_TYPE_EXTENDED (oneOf, discriminated by a const)', 'backward',
    '{"oneOf":[{"type":"object","properties":{"kind":{"const":"card"},"last4":{"type":"string"}},"required":["kind"]},
               {"type":"object","properties":{"kind":{"const":"iban"},"iban":{"type":"string"}},"required":["kind"]}]}',
    '{"oneOf":[{"type":"object","properties":{"kind":{"const":"card"},"last4":{"type":"string"}},"required":["kind"]},
               {"type":"object","properties":{"kind":{"const":"iban"},"iban":{"type":"string"}},"required":["kind"]},
               {"type":"object","properties":{"kind":{"const":"cash"}},"required":["kind"]}]}', 'accepted'),
-- Confluent accepts SUM_TYPE_EXTENDED; here the new branch may also match
-- an old value, which then matches two branches and fails oneOf
(94, 'SUM_TYPE_EXTENDED (oneOf, overlapping branch: stricter)', 'backward',
    '{"oneOf":[{"type":"string"},{"type":"integer"}]}', '{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"string","maxLength":3}]}', 'refused'),
(95, 'PRODUCT_TYPE_NARROWED (allOf)', 'backward',
    '{"allOf":[{"type":"integer"},{"minimum":0}]}', '{"allOf":[{"type":"integer"}]}', 'accepted'),
(96, 'PRODUCT_TYPE_EXTENDED (allOf)', 'backward',
    '{"allOf":[{"type":"integer"}]}', '{"allOf":[{"type":"integer"},{"minimum":0}]}', 'refused'),
-- Confluent reports TYPE_CHANGED (combined to plain); each branch fits
(97, 'anyOf replaced by a type union (more precise)', 'backward',
    '{"anyOf":[{"type":"string"},{"type":"integer"}]}', '{"type":["string","integer"]}', 'accepted'),
(98, 'type union replaced by anyOf, split by type', 'backward',
    '{"type":["string","null"],"maxLength":5}', '{"anyOf":[{"type":"string","maxLength":10},{"type":"null"}]}', 'accepted'),
(99, 'not added, shown disjoint', 'backward',
    '{"type":"integer","minimum":1}', '{"type":"integer","not":{"const":0}}', 'accepted'),
(100, 'not added, old values may match it', 'backward',
    '{"type":"integer"}', '{"type":"integer","not":{"const":0}}', 'refused'),
(101, 'not changed', 'backward',
    '{"not":{"type":"string"}}', '{"not":{"type":["string","null"]}}', 'refused'),
(102, 'oneOf kept while a property widens', 'backward',
    '{"type":"object","properties":{"a":{"type":"string"}},"oneOf":[{"required":["a"]},{"required":["b"]}]}',
    '{"type":"object","properties":{"a":{"type":["string","null"]}},"oneOf":[{"required":["a"]},{"required":["b"]}]}', 'accepted'),
-- compatible, but the old schema's parts are compared one at a time and
-- neither alone fits: refused, with the reasons of its plain keywords
(103, 'allOf in the old schema spread over parts (limitation)', 'backward',
    '{"type":"string","allOf":[{"maxLength":5}]}', '{"type":"string","maxLength":5}', 'refused'),
-- $ref
(110, '$ref: a definition widened', 'backward',
    '{"$defs":{"q":{"type":"integer"}},"properties":{"qty":{"$ref":"#/$defs/q"}}}',
    '{"$defs":{"q":{"type":"number"}},"properties":{"qty":{"$ref":"#/$defs/q"}}}', 'accepted'),
(111, '$ref: a definition changed type', 'backward',
    '{"$defs":{"q":{"type":"integer"}},"properties":{"qty":{"$ref":"#/$defs/q"}}}',
    '{"$defs":{"q":{"type":"string"}},"properties":{"qty":{"$ref":"#/$defs/q"}}}', 'refused'),
(112, '$ref: inlined (same values)', 'backward',
    '{"$defs":{"q":{"type":"integer"}},"properties":{"qty":{"$ref":"#/$defs/q"}}}',
    '{"properties":{"qty":{"type":"integer"}}}', 'accepted'),
(113, '$ref: recursive tree, widened', 'backward',
    '{"$defs":{"node":{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}}}},"$ref":"#/$defs/node"}',
    '{"$defs":{"node":{"type":"object","properties":{"name":{"type":["string","null"]},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}}}},"$ref":"#/$defs/node"}', 'accepted'),
(114, '$ref: recursive tree, narrowed', 'backward',
    '{"$defs":{"node":{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}}}},"$ref":"#/$defs/node"}',
    '{"$defs":{"node":{"type":"object","properties":{"name":{"type":"string","maxLength":10},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}}}},"$ref":"#/$defs/node"}', 'refused'),
(115, '$ref: cycle without content', 'backward',
    '{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}',
    '{"$defs":{"a":{"$ref":"#/$defs/a"},"b":{}},"$ref":"#/$defs/a"}', 'refused'),
(116, '$ref: unresolvable', 'backward', '{"type":"integer"}', '{"$ref":"#/$defs/missing"}', 'refused'),
(117, '$ref beside other keywords (both apply)', 'backward',
    '{"type":"string"}', '{"$defs":{"s":{"type":"string"}},"$ref":"#/$defs/s","maxLength":3}', 'refused'),
(118, '$ref "#": recursive through the root, widened', 'backward',
    '{"type":"object","properties":{"n":{"type":"integer"},"child":{"$ref":"#"}}}',
    '{"type":"object","properties":{"n":{"type":"number"},"child":{"$ref":"#"}}}', 'accepted'),
(119, '$ref "#": recursive through the root, narrowed', 'backward',
    '{"type":"object","properties":{"n":{"type":"integer"},"child":{"$ref":"#"}}}',
    '{"type":"object","properties":{"n":{"type":"integer","minimum":0},"child":{"$ref":"#"}}}', 'refused'),
-- boolean schemas, annotations, keywords outside the subset
(120, 'SCHEMA_REMOVED (true accepts all)', 'backward', '{"type":"integer"}', 'true', 'accepted'),
(121, 'false schema', 'backward', '{}', 'false', 'refused'),
(122, 'old false schema (no old events)', 'backward', 'false', '{"type":"string"}', 'accepted'),
(123, 'ID_CHANGED, TITLE_CHANGED, DESCRIPTION_CHANGED, DEFAULT_CHANGED', 'full',
    '{"$id":"urn:a","title":"A","description":"x","type":"object","properties":{"n":{"type":"integer","default":1,"examples":[1]}}}',
    '{"$id":"urn:b","title":"B","description":"y","type":"object","properties":{"n":{"type":"integer","default":2,"deprecated":true}}}', 'accepted'),
(124, 'keyword outside the subset', 'backward', '{"type":"object"}', '{"type":"object","minProperties":1}', 'refused'),
-- modes
(130, 'identical schemas, full', 'full',
    '{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}',
    '{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}', 'accepted'),
(131, 'none checks nothing', 'none', '{"type":"integer"}', '{"type":"string"}', 'accepted');

-- one row per reason
SELECT e.id, e.rule, e.mode, e.expect, r.reason
FROM evolution e
LEFT JOIN LATERAL eventbus.check_schema_compatibility(e.new_schema, e.old_schema, e.mode) AS r(reason) ON true
ORDER BY e.id, r.reason;

-- every verdict as expected (no row)
SELECT e.id, e.rule, e.expect
FROM evolution e
WHERE e.expect <> CASE WHEN EXISTS (SELECT FROM eventbus.check_schema_compatibility(e.new_schema, e.old_schema, e.mode))
                       THEN 'refused' ELSE 'accepted' END;
SELECT count(*) AS evolutions, count(*) FILTER (WHERE expect = 'refused') AS refused FROM evolution;

-- deep nesting: bounded, refused with a reason, no crash
SELECT eventbus.check_schema_compatibility(
  (repeat('{"properties":{"a":', 100) || '{"type":"string"}' || repeat('}}', 100))::jsonb,
  (repeat('{"properties":{"a":', 100) || '{"type":"integer"}' || repeat('}}', 100))::jsonb);
-- identical deep schemas are compatible
SELECT count(*) FROM eventbus.check_schema_compatibility(
  (repeat('{"properties":{"a":', 100) || '{"type":"string"}' || repeat('}}', 100))::jsonb,
  (repeat('{"properties":{"a":', 100) || '{"type":"string"}' || repeat('}}', 100))::jsonb);
-- too much work: 300 old branches against 300 new ones
SELECT eventbus.check_schema_compatibility(
  jsonb_build_object('anyOf', (SELECT jsonb_agg(jsonb_build_object('const', i + 1000)) FROM generate_series(1, 300) i)),
  jsonb_build_object('anyOf', (SELECT jsonb_agg(jsonb_build_object('const', i)) FROM generate_series(1, 300) i)));

-- the function is pure and open to everyone
SELECT provolatile, proisstrict, proparallel,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
FROM pg_proc p WHERE p.oid = 'eventbus.check_schema_compatibility(jsonb, jsonb, text)'::regprocedure;
-- default mode is backward; NULL gives no row
SELECT * FROM eventbus.check_schema_compatibility('{"type":"string"}', '{"type":"integer"}');
SELECT count(*) FROM eventbus.check_schema_compatibility(NULL, '{}');

-- errors
SELECT * FROM eventbus.check_schema_compatibility('{}', '{}', 'backward_transitive');
SELECT * FROM eventbus.check_schema_compatibility('{}', '{}', 'BACKWARDS');
SELECT * FROM eventbus.check_schema_compatibility('[1]', '{}');
SELECT * FROM eventbus.check_schema_compatibility('{}', '"x"');
