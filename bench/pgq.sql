-- Workload A, the established in-database queue: PgQ's insert_event, one
-- event per transaction, the key in ev_extra1.
\set n random(1, 1000000000)
\set k random(1, 1000)
SELECT pgq.insert_event('bench_a', 'order',
    format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}', :n::bigint, :k::int),
    'customer-' || :k::int, NULL, NULL, NULL);
