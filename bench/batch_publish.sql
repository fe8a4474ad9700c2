-- Workload B: :batch keyed events in one eventbus.publish_batch call.
-- Event i of a call has order id n+i and customer (k+i) mod 1000, so the
-- keys of one call spread over the partitions.
\set n random(1, 1000000000)
\set k random(1, 1000)
\set last :batch - 1
SELECT count(*)
FROM eventbus.publish_batch('bench_b',
    ARRAY(SELECT format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}',
                        :n::bigint + i, (:k::int + i) % 1000)::jsonb
          FROM generate_series(0, :last::int) i),
    ARRAY(SELECT 'customer-' || ((:k::int + i) % 1000)
          FROM generate_series(0, :last::int) i));
