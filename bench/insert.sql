-- Workload A, the ceiling: one row per transaction into a plain table of
-- the same shape as a topic.  The partition is derived from the key (not
-- with Kafka's partitioner, but spread the same way), the position comes
-- from a sequence.
\set n random(1, 1000000000)
\set k random(1, 1000)
INSERT INTO bench.plain_a (partition, position, event_id, created_at, key, value)
VALUES (:k::int % 8, nextval('bench.plain_a_seq'), gen_random_uuid(), now(),
    'customer-' || :k::int,
    format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}', :n::bigint, :k::int)::jsonb)
RETURNING partition, position;
