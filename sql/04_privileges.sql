-- Privileges: creating needs CREATE on eventbus_data; the topic's parent
-- table carries publish (INSERT) and read (SELECT) rights; owners alter/drop.
-- The tables belong to the extension owner; the creator owns the topic.
CREATE ROLE eb_admin;
CREATE ROLE eb_producer;
CREATE ROLE eb_consumer;
CREATE ROLE eb_nobody;

SET ROLE eb_nobody;
SELECT eventbus.create_topic('priv');
RESET ROLE;

GRANT CREATE ON SCHEMA eventbus_data TO eb_admin;
SET ROLE eb_admin;
SELECT eventbus.create_topic('priv', 2);
-- the owner may not change the tables behind publish()
ALTER TABLE eventbus_data.priv ADD COLUMN extra integer;
CREATE INDEX ON eventbus_data."priv$1" (key);
GRANT INSERT ON eventbus_data.priv TO eb_producer;
GRANT SELECT ON eventbus_data.priv TO eb_consumer;
SELECT position FROM eventbus.publish('priv', '{"by": "owner"}', partition => 0);
RESET ROLE;
SELECT c.relname, c.relowner = e.extowner AS extension_owns
FROM pg_class c, pg_extension e
WHERE c.relnamespace = 'eventbus_data'::regnamespace AND c.relname LIKE 'priv%'
  AND c.relkind = 'r' AND e.extname = 'pg_eventbus'
ORDER BY 1;
SELECT topic, owner FROM eventbus.topic WHERE topic = 'priv';
SELECT a.grantee::regrole, a.grantor::regrole = e.extowner AS from_extension_owner,
       a.privilege_type, a.is_grantable
FROM pg_class c, pg_extension e, aclexplode(c.relacl) a
WHERE c.oid = 'eventbus_data.priv'::regclass AND e.extname = 'pg_eventbus'
  AND a.grantee <> c.relowner
ORDER BY 1, 3;

SET ROLE eb_producer;
SELECT position FROM eventbus.publish('priv', '{"by": "producer"}', partition => 0);
SELECT count(*) FROM eventbus.publish_batch('priv', ARRAY['{}', '{}']::jsonb[], ARRAY['k0', 'k0']);
SELECT * FROM eventbus.read('priv', 0);
SELECT eventbus.alter_topic('priv', partitions => 3);
SELECT eventbus.drop_topic('priv');
-- direct inserts are refused even with INSERT privilege
INSERT INTO eventbus_data.priv (partition, position, event_id, created_at, value)
VALUES (0, 99, '00000000-0000-7000-8000-000000000000', '2026-01-01 00:00:00+00', '{}');
RESET ROLE;

SET ROLE eb_consumer;
SELECT position, value FROM eventbus.read('priv', 0);
SELECT count(*) FROM eventbus_data.priv;
SELECT eventbus.publish('priv', '{}');
RESET ROLE;

SET ROLE eb_nobody;
SELECT eventbus.publish('priv', '{}');
SELECT * FROM eventbus.read('priv', 0);
SELECT topic, partitions FROM eventbus.topics WHERE topic = 'priv';
SELECT * FROM eventbus.run_maintenance();
SELECT count(*) FROM eventbus.topic;
RESET ROLE;

-- consuming through a group needs the privileges of the group's owner
SET ROLE eb_admin;
SELECT eventbus.create_topic('priv.dlq', 2);
GRANT INSERT ON eventbus_data."priv.dlq" TO eb_consumer;
RESET ROLE;
GRANT SELECT ON eventbus_data.priv TO eb_producer;
SET ROLE eb_consumer;
SELECT eventbus.create_group('billing', 'priv', 'earliest');
SELECT count(*) FROM eventbus.poll('billing', 'priv', 10, commit => true);
RESET ROLE;
SET ROLE eb_producer;
SELECT count(*) FROM eventbus.poll('billing', 'priv', 10, commit => true);
SELECT eventbus.commit('billing', 'priv', 0, 1);
SELECT eventbus.wait('billing', 'priv', '0');
SELECT eventbus.seek('billing', 'priv', 'earliest');
SELECT eventbus.delete_group('billing');
RESET ROLE;
GRANT eb_consumer TO eb_producer;
SET ROLE eb_producer;
SELECT eventbus.wait('billing', 'priv', '0');
RESET ROLE;
REVOKE eb_consumer FROM eb_producer;
SET ROLE eb_consumer;
SELECT eventbus.delete_group('billing');
RESET ROLE;

-- a role with the privileges of the topic owner may alter it
CREATE ROLE eb_admin_deputy IN ROLE eb_admin;
SET ROLE eb_admin_deputy;
SELECT eventbus.alter_topic('priv', partitions => 3);
RESET ROLE;
DROP ROLE eb_admin_deputy;
SET ROLE eb_admin;
SELECT eventbus.alter_topic('priv', partitions => 3);
SELECT eventbus.drop_topic('priv');
SELECT eventbus.drop_topic('priv.dlq');
RESET ROLE;

REVOKE CREATE ON SCHEMA eventbus_data FROM eb_admin;
DROP ROLE eb_admin, eb_producer, eb_consumer, eb_nobody;
