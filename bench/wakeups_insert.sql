-- bench/wakeups.sh, the naive producer without its NOTIFY: one row per
-- transaction into wakebench.naive (the columns of a topic, the position
-- from a sequence), the same event as bench/publish.sql.
\set n random(1, 1000000000)
\set k random(1, 1000)
INSERT INTO wakebench.naive (partition, key, value)
VALUES (:k::int % 8, 'customer-' || :k::int,
    format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}', :n::bigint, :k::int)::jsonb)
RETURNING partition, position;
