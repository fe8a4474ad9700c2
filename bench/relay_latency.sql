-- bench/relay.sh, latency run: one keyed event per transaction, run by
-- pgbench at a fixed rate (-R).  pgbench -D size=<bytes> sets the length
-- of the value's text form (bench/relay_setup.sql).
\set n random(1, 1000000000)
SELECT partition, position
FROM eventbus.publish('bench_lat', bench_relay.event_value(:n, :size), key => bench_relay.event_key(:n));
