-- bench/wakeups.sh, the naive baseline: the row of wakeups_insert.sql and
-- a NOTIFY in the same transaction (one statement), the way a producer
-- wakes its subscribers without pg_eventbus.  At commit, a transaction
-- that notified takes a lock that is global to the server and holds it
-- until its commit record is flushed.
\set n random(1, 1000000000)
\set k random(1, 1000)
WITH i AS (
    INSERT INTO wakebench.naive (partition, key, value)
    VALUES (:k::int % 8, 'customer-' || :k::int,
        format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}', :n::bigint, :k::int)::jsonb)
    RETURNING partition, position)
SELECT partition, position, pg_notify('wakebench_naive', position::text) FROM i;
