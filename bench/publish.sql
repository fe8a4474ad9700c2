-- Workloads A and C: one keyed event per transaction with eventbus.publish.
-- pgbench -D topic=... picks the topic.
\set n random(1, 1000000000)
\set k random(1, 1000)
SELECT partition, position
FROM eventbus.publish(:topic,
    format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}', :n::bigint, :k::int)::jsonb,
    key => 'customer-' || :k::int);
