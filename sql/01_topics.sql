-- Topics: creation, validation of names and arguments, alter, drop, view.
CREATE EXTENSION pg_eventbus;

SELECT eventbus.create_topic('orders', 4);
SELECT eventbus.create_topic('audit.log-v2_x');
SELECT eventbus.create_topic('short-lived', 2, retention => '1 hour');
SELECT topic, partitions, retention, end_positions, events, segments
  FROM eventbus.topics ORDER BY topic;

-- the parent table carries the topic's privileges and refuses direct inserts
SELECT relname, relkind FROM pg_class
 WHERE relnamespace = 'eventbus_data'::regnamespace AND relkind = 'r'
 ORDER BY relname;
INSERT INTO eventbus_data.orders (partition, position, event_id, created_at, value)
VALUES (0, 99, '00000000-0000-7000-8000-000000000000', '2026-01-01 00:00:00+00', '{}');

-- duplicate
SELECT eventbus.create_topic('orders');

-- invalid and hostile names
SELECT eventbus.create_topic('');
SELECT eventbus.create_topic(NULL);
SELECT eventbus.create_topic('bad name');
SELECT eventbus.create_topic('x"; DROP TABLE eventbus.topic; --');
SELECT eventbus.create_topic('semi;colon');
SELECT eventbus.create_topic('quote''s');
SELECT eventbus.create_topic(E'new\nline');
SELECT eventbus.create_topic('tab	ab');
SELECT eventbus.create_topic('ünïcode');
SELECT eventbus.create_topic('.');
SELECT eventbus.create_topic('..');
SELECT eventbus.create_topic(repeat('a', 55));
SELECT eventbus.create_topic(repeat('a', 54));
SELECT eventbus.drop_topic(repeat('a', 54));
SELECT eventbus.create_topic('a$1');

-- invalid partition counts and retention
SELECT eventbus.create_topic('p0', 0);
SELECT eventbus.create_topic('pneg', -3);
SELECT eventbus.create_topic('pbig', 1025);
SELECT eventbus.create_topic('pnull', NULL);
SELECT eventbus.create_topic('r0', 1, retention => '0');
SELECT retention FROM eventbus.topics WHERE topic = 'r0';
SELECT eventbus.drop_topic('r0');

-- alter: partitions only grow, retention set and cleared
SELECT eventbus.alter_topic('orders', partitions => 6);
SELECT eventbus.alter_topic('orders', partitions => 2);
SELECT eventbus.alter_topic('orders', partitions => 2000);
SELECT eventbus.alter_topic('orders', retention => '7 days');
SELECT partitions, retention FROM eventbus.topics WHERE topic = 'orders';
SELECT eventbus.alter_topic('orders', retention => '0');
SELECT partitions, retention FROM eventbus.topics WHERE topic = 'orders';
SELECT eventbus.alter_topic('orders');
SELECT eventbus.alter_topic('nope', partitions => 3);

-- drop
SELECT eventbus.drop_topic('audit.log-v2_x');
SELECT eventbus.drop_topic('audit.log-v2_x');
SELECT eventbus.drop_topic(NULL);
SELECT count(*) FROM pg_class WHERE relname LIKE 'audit.log-v2_x%';
SELECT topic FROM eventbus.topics ORDER BY topic;

-- a dropped topic's name can be reused, and starts from position 0
SELECT eventbus.create_topic('reuse');
SELECT * FROM eventbus.publish('reuse', '1');
SELECT eventbus.drop_topic('reuse');
SELECT eventbus.create_topic('reuse');
SELECT * FROM eventbus.publish('reuse', '1');
SELECT eventbus.drop_topic('reuse');

-- topic DDL is transactional
BEGIN;
SELECT eventbus.create_topic('rolled-back', 2);
SELECT * FROM eventbus.publish('rolled-back', '1', partition => 1);
ROLLBACK;
SELECT count(*) FROM eventbus.topics WHERE topic = 'rolled-back';
SELECT eventbus.create_topic('rolled-back', 2);
SELECT * FROM eventbus.publish('rolled-back', '1', partition => 1);
BEGIN;
SELECT eventbus.drop_topic('rolled-back');
ROLLBACK;
SELECT * FROM eventbus.publish('rolled-back', '2', partition => 1);
-- a drop rolled back to a savepoint leaves the topic and its positions
-- alone: the counter still remembers position 2, rolled back and vacuumed
BEGIN;
SELECT * FROM eventbus.publish('rolled-back', '"gone"', partition => 1);
ROLLBACK;
VACUUM eventbus_data."rolled-back$1";
BEGIN;
SAVEPOINT s;
SELECT eventbus.drop_topic('rolled-back');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT * FROM eventbus.publish('rolled-back', '3', partition => 1);
SELECT eventbus.drop_topic('rolled-back');

-- topic DDL cannot be prepared
BEGIN;
SELECT eventbus.create_topic('prepared');
PREPARE TRANSACTION 'p1';
SELECT count(*) FROM eventbus.topics WHERE topic = 'prepared';

-- every function and view is documented
SELECT p.proname FROM pg_proc p
 WHERE p.pronamespace = 'eventbus'::regnamespace
   AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = 'eventbus'::regnamespace AND c.relkind IN ('r', 'v')
   AND obj_description(c.oid, 'pg_class') IS NULL;

-- clean up
SELECT eventbus.drop_topic('orders');
SELECT eventbus.drop_topic('short-lived');
