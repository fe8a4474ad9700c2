-- Workload B, the ceiling: one INSERT statement writing :batch rows of the
-- same events (the rows come from generate_series, as in the other
-- contenders, rather than from a VALUES list written out by the client).
\set n random(1, 1000000000)
\set k random(1, 1000)
\set last :batch - 1
INSERT INTO bench.plain_b (partition, position, event_id, created_at, key, value)
SELECT (:k::int + i) % 1000 % 8, nextval('bench.plain_b_seq'), gen_random_uuid(), now(),
       'customer-' || ((:k::int + i) % 1000),
       format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}',
              :n::bigint + i, (:k::int + i) % 1000)::jsonb
FROM generate_series(0, :last::int) i;
