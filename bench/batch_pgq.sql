-- Workload B, PgQ: :batch insert_event calls in one statement.
\set n random(1, 1000000000)
\set k random(1, 1000)
\set last :batch - 1
SELECT count(pgq.insert_event('bench_b', 'order',
           format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}',
                  :n::bigint + i, (:k::int + i) % 1000),
           'customer-' || ((:k::int + i) % 1000), NULL, NULL, NULL))
FROM generate_series(0, :last::int) i;
