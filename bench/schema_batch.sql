-- bench/schema.sh: :batch keyed 10-field events per publish_batch call;
-- -D topic=... -D batch=...
\set n random(1, 1000000000)
\set k random(1, 1000)
\set last :batch - 1
SELECT count(*)
FROM eventbus.publish_batch(:topic,
    ARRAY(SELECT format('{"order_id": %s, "customer": "customer-%s", "status": "paid", "amount": 12.5, "currency": "EUR", "email": "c%s@example.com", "paid": true, "note": null, "address": {"city": "Lyon", "zip": "69001"}, "items": [1,2,3]}',
                        :n::bigint + i, (:k::int + i) % 1000, (:k::int + i) % 1000)::jsonb
          FROM generate_series(0, :last::int) i),
    ARRAY(SELECT 'customer-' || ((:k::int + i) % 1000)
          FROM generate_series(0, :last::int) i));
