-- bench/schema.sh: one keyed 10-field event per transaction; -D topic=...
\set n random(1, 1000000000)
\set k random(1, 1000)
SELECT partition, position
FROM eventbus.publish(:topic,
    format('{"order_id": %s, "customer": "customer-%s", "status": "paid", "amount": 12.5, "currency": "EUR", "email": "c%s@example.com", "paid": true, "note": null, "address": {"city": "Lyon", "zip": "69001"}, "items": [1,2,3]}',
           :n::bigint, :k::int, :k::int)::jsonb,
    key => 'customer-' || :k::int);
