-- Privileges: creating needs CREATE on eventbus_data; the topic's parent
-- table carries publish (INSERT) and read (SELECT) rights; owners alter/drop.
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
SELECT tableowner FROM pg_tables WHERE schemaname = 'eventbus_data' AND tablename LIKE 'priv%' ORDER BY tablename;
GRANT INSERT ON eventbus_data.priv TO eb_producer;
GRANT SELECT ON eventbus_data.priv TO eb_consumer;
SELECT position FROM eventbus.publish('priv', '{"by": "owner"}', partition => 0);
RESET ROLE;

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

SET ROLE eb_admin;
SELECT eventbus.alter_topic('priv', partitions => 3);
SELECT eventbus.drop_topic('priv');
RESET ROLE;

REVOKE CREATE ON SCHEMA eventbus_data FROM eb_admin;
DROP ROLE eb_admin, eb_producer, eb_consumer, eb_nobody;
