-- Objects for bench/schema.sh: the same 10-field event published to a topic
-- without a schema and to one with a typical schema (types, required
-- properties, a pattern, an enum, a nested object).
\set ON_ERROR_STOP on
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('sc_plain', 8);
SELECT eventbus.create_topic('sc_schema', 8);
SELECT eventbus.register_schema('sc_schema', '{
  "type": "object",
  "required": ["order_id", "customer", "status", "amount", "currency", "address"],
  "additionalProperties": false,
  "properties": {
    "order_id": {"type": "integer", "minimum": 1},
    "customer": {"type": "string", "pattern": "^customer-[0-9]+$"},
    "status":   {"enum": ["new", "paid", "shipped", "cancelled"]},
    "amount":   {"type": "number", "minimum": 0},
    "currency": {"type": "string", "minLength": 3, "maxLength": 3},
    "email":    {"type": "string", "maxLength": 254},
    "paid":     {"type": "boolean"},
    "note":     {"type": ["string", "null"]},
    "address":  {"type": "object", "required": ["city", "zip"],
                 "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
    "items":    {"type": "array", "maxItems": 100, "items": {"type": "integer"}}
  }
}');
