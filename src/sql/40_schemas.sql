-- Event contracts: JSON Schemas of topics, validated at publish.

-- Every version of every topic's schema.  A version number names one schema
-- of its topic forever: drop_schema() marks the current line of versions
-- dropped (kept for history), and a later registration continues the
-- numbering.  The current schema of a topic is its highest version that is
-- not dropped.
CREATE TABLE eventbus.topic_schema (
    topic_id      integer NOT NULL REFERENCES eventbus.topic ON DELETE CASCADE,
    version       integer NOT NULL CHECK (version > 0),
    schema        jsonb NOT NULL,
    compatibility text NOT NULL CHECK (compatibility IN
                    ('backward', 'forward', 'full', 'backward_transitive',
                     'forward_transitive', 'full_transitive', 'none')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    dropped_at    timestamptz,
    PRIMARY KEY (topic_id, version)
);
REVOKE ALL ON eventbus.topic_schema FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic_schema', '');
COMMENT ON TABLE eventbus.topic_schema IS
  'Versions of the JSON Schema of each topic (internal; use the eventbus.schemas view). compatibility is the mode the version was checked with when registered; dropped_at is set by drop_schema() on every version that was in use. The current schema is the highest version not dropped.';

CREATE FUNCTION eventbus.register_schema(topic text, schema jsonb,
                                         compatibility text DEFAULT 'backward')
RETURNS integer
AS 'MODULE_PATHNAME', 'eb_register_schema'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.register_schema(text, jsonb, text) IS
  'Registers a new version of the topic''s JSON Schema (a subset of draft 2020-12, see docs/schemas.md) and returns its version number; from then on publish() and publish_batch() refuse events that do not conform. The version is checked against the previous ones under compatibility: backward, forward, full, backward_transitive, forward_transitive, full_transitive or none. Registering the current schema again returns its version. Topic owner (or a role with its privileges) only.';

CREATE FUNCTION eventbus.drop_schema(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_drop_schema'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.drop_schema(text) IS
  'Stops validating the topic''s events. Its versions stay in eventbus.schemas, marked dropped; a later register_schema() continues their numbering and is not checked against them. Topic owner (or a role with its privileges) only.';

CREATE VIEW eventbus.schemas WITH (security_barrier) AS
SELECT t.topic,
       s.version,
       s.schema,
       s.compatibility,
       s.created_at,
       s.dropped_at
FROM eventbus.topic_schema s
JOIN eventbus.topic t ON t.topic_id = s.topic_id
-- the topics the caller may see, as in the eventbus.topics view
WHERE pg_catalog.has_table_privilege(t.table_oid, 'SELECT')
   OR pg_catalog.has_table_privilege(t.table_oid, 'INSERT')
   OR pg_catalog.pg_has_role(t.owner, 'USAGE')
   OR pg_catalog.pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW eventbus.schemas IS
  'Schema versions of the topics the caller may read or publish to, whose owner''s privileges it has, or all for members of pg_monitor. dropped_at is set on versions that drop_schema() took out of use; a topic''s current schema is its highest version whose dropped_at is null.';
GRANT SELECT ON eventbus.schemas TO PUBLIC;
