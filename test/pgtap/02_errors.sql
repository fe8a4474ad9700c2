-- Every error a user can cause carries an SQLSTATE and a message.
BEGIN;
SELECT plan(24);

SELECT eventbus.create_topic('tap_err', 2);

SELECT throws_ok($$SELECT eventbus.create_topic('bad name')$$, '42602', NULL, 'invalid topic name');
SELECT throws_ok($$SELECT eventbus.create_topic(repeat('x', 55))$$, '42602', NULL, 'over-long topic name');
SELECT throws_ok($$SELECT eventbus.create_topic(E'a\u00e9')$$, '42602', NULL, 'non-ASCII topic name');
SELECT throws_ok($$SELECT eventbus.create_topic(NULL)$$, '22004', 'topic must not be null');
SELECT throws_ok($$SELECT eventbus.create_topic('tap_err')$$, '42710', 'topic "tap_err" already exists');
SELECT throws_ok($$SELECT eventbus.create_topic('p', 0)$$, '22023', NULL, 'zero partitions');
SELECT throws_ok($$SELECT eventbus.alter_topic('tap_err', partitions => 1)$$, '22023', 'partitions can only grow');
SELECT throws_ok($$SELECT eventbus.drop_topic('nope')$$, '42704', 'topic "nope" does not exist');

SELECT throws_ok($$SELECT eventbus.publish('nope', '{}')$$, '42704', NULL, 'unknown topic');
SELECT throws_ok($$SELECT eventbus.publish('tap_err', NULL)$$, '22004', 'value must not be null');
SELECT throws_ok($$SELECT eventbus.publish('tap_err', '{}', partition => 2)$$, '22023', NULL, 'partition out of range');
SELECT throws_ok($$SELECT eventbus.publish('tap_err', '{}', headers => '[]')$$, '22023', NULL, 'headers not an object');
SELECT throws_ok($$SELECT eventbus.publish('tap_err', '{}', headers => '{"eventbus-x": "1"}')$$, '22023', NULL, 'reserved header');
SELECT throws_ok($$SELECT eventbus.publish('tap_err', '{}', idempotency_key => repeat('k', 2000))$$, '22023', NULL, 'over-long idempotency key');
SET LOCAL eventbus.max_event_size = 1024;
SELECT throws_ok($$SELECT eventbus.publish('tap_err', to_jsonb(repeat('x', 2000)))$$, '54000', NULL, 'oversized event');
SELECT throws_ok($$SELECT eventbus.publish_batch('tap_err', ARRAY['{}', '{}']::jsonb[], ARRAY['a'])$$, '2202E', NULL, 'keys of the wrong length');
SELECT throws_ok($$SELECT eventbus.publish_batch('tap_err', ARRAY[NULL]::jsonb[])$$, '22004', NULL, 'null batch element');

SELECT throws_ok($$SELECT * FROM eventbus.read('tap_err', 5)$$, '22023', NULL, 'read: partition out of range');
SELECT throws_ok($$SELECT * FROM eventbus.read('tap_err', 0, after_position => -5)$$, '22023', NULL, 'read: bad position');
SELECT throws_ok($$SELECT * FROM eventbus.read('tap_err', 0, max_events => 0)$$, '22023', NULL, 'read: bad max_events');

CREATE ROLE tap_nobody;
SET LOCAL ROLE tap_nobody;
SELECT throws_ok($$SELECT eventbus.publish('tap_err', '{}')$$, '42501', NULL, 'publish without INSERT');
SELECT throws_ok($$SELECT * FROM eventbus.read('tap_err', 0)$$, '42501', NULL, 'read without SELECT');
SELECT throws_ok($$SELECT eventbus.drop_topic('tap_err')$$, '42501', NULL, 'drop by non-owner');
RESET ROLE;

SELECT throws_ok($$SET eventbus.max_event_size = 10$$, '22023', NULL, 'setting below its minimum');

SELECT * FROM finish();
ROLLBACK;
