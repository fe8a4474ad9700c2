-- bench/hot.sh: one keyed event per transaction to a random one of the
-- topics hot_1 .. hot_:ntopics (pgbench -D ntopics=N).
\set t random(1, :ntopics)
\set n random(1, 1000000000)
\set k random(1, 1000)
SELECT partition, position
FROM eventbus.publish('hot_' || :t::int, format('{"n": %s}', :n::bigint)::jsonb,
    key => 'k-' || :k::int);
