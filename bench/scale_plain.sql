-- bench/scale.sh: the floor of PostgreSQL itself for the topic sweep.  The
-- same keyed value as scale_publish.sql, inserted with a plain INSERT into
-- a random one of the first :ntopics tables scale_plain.t_<i>, which have
-- a segment table's shape (bench/scale_setup.sql).  Run with -M simple: the
-- table name is substituted into the statement's text, so each statement
-- is parsed and planned (for N = 1 as for N = 1000).
\set n random(1, 1000000000)
\set k random(1, 1000)
\set t random(0, greatest(:ntopics, 1) - 1)
INSERT INTO scale_plain.t_:t (partition, event_id, created_at, key, value)
VALUES (abs(hashtext('customer-' || :k)) % 8, gen_random_uuid(), now(), 'customer-' || :k,
        format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}', :n::bigint, :k::int)::jsonb);
