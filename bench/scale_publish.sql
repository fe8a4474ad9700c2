-- bench/scale.sh: one keyed event per transaction to a random one of the
-- first :ntopics topics scale_<i> (pgbench -D ntopics=N), or, with
-- ntopics=0, to scale_pub.
\set n random(1, 1000000000)
\set k random(1, 1000)
\set t random(0, greatest(:ntopics, 1) - 1)
SELECT partition, position
FROM eventbus.publish(CASE WHEN :ntopics::int = 0 THEN 'scale_pub' ELSE 'scale_' || :t::int END,
    format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}', :n::bigint, :k::int)::jsonb,
    key => 'customer-' || :k::int);
