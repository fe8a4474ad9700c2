-- pg_eventbus in a few steps.  Run by `make demo` on a throwaway server.
\set ON_ERROR_STOP on
\pset footer off

\echo
\echo '== 1. Install the extension, create a topic with 3 partitions, relay it to Kafka'
CREATE EXTENSION pg_eventbus;
SELECT eventbus.create_topic('orders', partitions => 3);
-- the relay worker creates its replication slot once the extension exists
DO $$
BEGIN
  FOR i IN 1 .. 300 LOOP
    EXIT WHEN (SELECT state FROM eventbus.relay_status) = 'running';
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT eventbus.relay_topic('orders');
SELECT state, slot_name FROM eventbus.relay_status;

\echo
\echo '== 2. Publish an event in the same transaction as the business write'
CREATE TABLE shop_orders (id int PRIMARY KEY, customer text, total numeric);
BEGIN;
INSERT INTO shop_orders VALUES (42, 'customer-7', 99.50);
SELECT * FROM eventbus.publish('orders', '{"order_id": 42, "total": 99.50}', key => 'customer-7');
COMMIT;

\echo
\echo '== 3. A transaction that rolls back publishes nothing'
BEGIN;
INSERT INTO shop_orders VALUES (43, 'customer-9', 10.00);
SELECT * FROM eventbus.publish('orders', '{"order_id": 43, "total": 10.00}', key => 'customer-9');
ROLLBACK;

\echo
\echo '== 4. Many events in one call; the same key always goes to the same partition'
SELECT * FROM eventbus.publish_batch('orders',
  ARRAY['{"order_id": 44}', '{"order_id": 45}', '{"order_id": 46}']::jsonb[],
  ARRAY['customer-7', 'customer-1', 'customer-7']);

\echo
\echo '== 5. Read every partition back in position order (order 43 is not there)'
SELECT r.partition, r.position, r.key, r.value
  FROM generate_series(0, 2) AS p, eventbus.read('orders', p) AS r
 ORDER BY r.partition, r.position;

\echo
\echo '== 6. A reader never passes an event that may still commit'
\echo '   A second session (through dblink) publishes order 47 and keeps its transaction open;'
\echo '   order 48 commits right after it.  Readers stop below 47 until it commits.'
CREATE EXTENSION dblink;
SELECT dblink_connect('producer', format('host=%s port=%s dbname=postgres user=postgres',
       current_setting('unix_socket_directories'), current_setting('port')));
SELECT dblink_exec('producer', 'BEGIN');
SELECT * FROM dblink('producer',
  $$SELECT * FROM eventbus.publish('orders', '{"order_id": 47}', key => 'customer-7')$$)
  AS open_event(partition int, position bigint);
SELECT * FROM eventbus.publish('orders', '{"order_id": 48}', key => 'customer-7');
SELECT position, value FROM eventbus.read('orders', 1, after_position => 2);
SELECT dblink_exec('producer', 'COMMIT');
SELECT position, value FROM eventbus.read('orders', 1, after_position => 2);
SELECT dblink_disconnect('producer');
\echo '   (Kafka gets transactions in commit order: there 48 comes before 47, see below.)'

\echo
\echo '== 7. A consumer group applies each event exactly once, in the same transaction as its work'
CREATE TABLE invoices (order_id int PRIMARY KEY);
SELECT eventbus.create_group('billing', 'orders', start_at => 'earliest');
INSERT INTO invoices
SELECT (value->>'order_id')::int FROM eventbus.poll('billing', 'orders', 100, commit => true);
SELECT * FROM invoices ORDER BY order_id;
SELECT count(*) AS polled_again FROM eventbus.poll('billing', 'orders', 100, commit => true);

\echo
\echo '== 8. What a DBA sees'
SELECT topic, partitions, end_positions, events, segments, pg_size_pretty(size_bytes) AS size, relayed_to
  FROM eventbus.topics;
SELECT group_name, partition, committed_position, end_position, lag FROM eventbus.consumer_lag;
SELECT pg_sleep(1);
SELECT state, events_relayed, messages_in_flight, latency_p50_ms IS NOT NULL AS measured, last_error
  FROM eventbus.relay_status;
