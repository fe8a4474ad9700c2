-- The examples of docs/howto-in-database-consumer.md, run as written.
SELECT eventbus.create_topic('orders', 2);
SELECT eventbus.create_group('billing', 'orders', 'earliest', max_attempts => 2);
CREATE TABLE invoices (order_id int PRIMARY KEY, customer text, amount numeric);
CREATE FUNCTION apply_order(v jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF v ? 'broken' THEN
    RAISE EXCEPTION 'order % is broken', v->>'order_id';
  END IF;
  INSERT INTO invoices VALUES ((v->>'order_id')::int, v->>'customer', (v->>'total')::numeric);
END $$;
SELECT count(*) FROM eventbus.publish_batch('orders',
  ARRAY['{"order_id": 1, "customer": "a", "total": 10}',
        '{"order_id": 2, "customer": "b", "total": 20}',
        '{"order_id": 3, "broken": true}',
        '{"order_id": 4, "customer": "a", "total": 40}']::jsonb[],
  ARRAY['a', 'b', 'b', 'a']);

CREATE PROCEDURE billing_consume(batch int DEFAULT 500)
LANGUAGE plpgsql AS $$
DECLARE
  ev eventbus.polled_event;
  last_done jsonb := '{}';      -- partition -> last position polled
  done record;
BEGIN
  FOR ev IN SELECT * FROM eventbus.poll('billing', 'orders', batch) LOOP
    BEGIN
      PERFORM apply_order(ev.value);          -- your work
    EXCEPTION WHEN OTHERS THEN
      -- give the event back: retried later, dead-lettered after max_attempts
      PERFORM eventbus.nack('billing', 'orders', ev.partition, ev.position,
                            retry_after => '1 minute', reason => SQLERRM);
    END;
    last_done := last_done || jsonb_build_object(ev.partition::text, ev.position);
  END LOOP;
  -- everything polled is now applied or scheduled for a retry
  FOR done IN SELECT key::int AS partition, value::bigint AS position
                FROM jsonb_each_text(last_done) LOOP
    PERFORM eventbus.commit('billing', 'orders', done.partition, done.position);
  END LOOP;
END $$;

CALL billing_consume();
SELECT * FROM invoices ORDER BY order_id;
SELECT sum(lag), sum(pending_retries) FROM eventbus.consumer_lag WHERE group_name = 'billing';
-- running it again applies nothing twice
CALL billing_consume();
SELECT count(*) FROM invoices;
-- make the retry due and fail it once more: dead-lettered after 2 attempts
UPDATE eventbus.group_retry SET not_before = now();
CALL billing_consume();
SELECT value->>'order_id' AS order_id, headers->>'eventbus-dlq-reason' AS reason
  FROM eventbus.read('orders.dlq', eventbus.partition_for_key('b', 2));
SELECT sum(pending_retries) FROM eventbus.consumer_lag WHERE group_name = 'billing';

-- the one-statement form
SELECT eventbus.create_group('billing-2', 'orders', 'earliest');
TRUNCATE invoices;
INSERT INTO invoices (order_id, customer, amount)
SELECT (value->>'order_id')::int, key, (value->>'total')::numeric
  FROM eventbus.poll('billing-2', 'orders', 500, commit => true)
 WHERE NOT value ? 'broken';
SELECT * FROM invoices ORDER BY order_id;
SELECT sum(lag) FROM eventbus.consumer_lag WHERE group_name = 'billing-2';

DROP PROCEDURE billing_consume;
DROP FUNCTION apply_order;
DROP TABLE invoices;
SELECT eventbus.drop_topic('orders', force => true);
SELECT eventbus.drop_topic('orders.dlq');
