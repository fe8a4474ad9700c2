-- bench/hot.sh: one keyed event per transaction to topic hot_1.
\set n random(1, 1000000000)
\set k random(1, 1000)
SELECT partition, position
FROM eventbus.publish('hot_1', format('{"n": %s}', :n::bigint)::jsonb,
    key => 'k-' || :k::int);
