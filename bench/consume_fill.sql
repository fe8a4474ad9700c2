-- Workload D of bench/run.sh: the events every consumer drains, written
-- before anything is timed.  psql variable: events (a multiple of 4000).
--
-- The same :events events go to
--   - eventbus topic bench_d, 4 partitions, with publish_batch (1000 a call),
--     exactly events/4 in each partition;
--   - two PgQ queues, bench_d100 and bench_d1000, ticked after every 100
--     and every 1000 events, so that each PgQ batch (the events between two
--     ticks) holds exactly 100 or 1000 events;
--   - bench.d_events, from which consume.sh refills the plain queue table
--     bench.d_queue before each of its runs (a queue drained by DELETE is
--     gone afterwards).
--
-- Every event is the one of the other workloads: a small JSON object and
-- key customer-<k>.  The keys are chosen so that the topic's partitions
-- get the same number of events (each key maps to one partition, and
-- event i takes a key of partition i % 4).

\set ON_ERROR_STOP on
SET synchronous_commit = off;

SELECT eventbus.create_topic('bench_d', 4);

CREATE TABLE bench.d_events (
    i     integer PRIMARY KEY,
    key   text NOT NULL,
    value jsonb NOT NULL
);

INSERT INTO bench.d_events
WITH keys AS (
    SELECT k, p, row_number() OVER (PARTITION BY p ORDER BY k) - 1 AS r,
           count(*) OVER (PARTITION BY p) AS n
    FROM (SELECT k, eventbus.partition_for_key('customer-' || k, 4) AS p
          FROM generate_series(1, 1000) k) s
)
SELECT i, 'customer-' || keys.k,
       format('{"order_id": %s, "customer": "customer-%s", "amount": 12.5, "items": [1,2,3]}',
              100000000 + i, keys.k)::jsonb
FROM generate_series(0, :events - 1) i
JOIN keys ON keys.p = i % 4 AND keys.r = (i / 4) % keys.n;

-- The plain queue: the columns a hand-written queue has.
CREATE TABLE bench.d_queue (
    id         bigserial PRIMARY KEY,
    key        text,
    value      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- consume.sh empties and refills it before each run; autovacuum would only add
-- WAL of its own to the figures (see docs/benchmarks.md)
ALTER TABLE bench.d_queue SET (autovacuum_enabled = off);

-- consume_floor.sql: one row updated per transaction.
CREATE TABLE bench.d_floor (id integer PRIMARY KEY, n bigint NOT NULL);
INSERT INTO bench.d_floor VALUES (1, 0);

-- Topic: 1000 events a call, one transaction each.
SELECT format('SELECT count(*) FROM eventbus.publish_batch(''bench_d'', '
              'ARRAY(SELECT value FROM bench.d_events WHERE i >= %s AND i < %s ORDER BY i), '
              'ARRAY(SELECT key FROM bench.d_events WHERE i >= %s AND i < %s ORDER BY i))',
              c * 1000, (c + 1) * 1000, c * 1000, (c + 1) * 1000)
FROM generate_series(0, :events / 1000 - 1) c
ORDER BY c \gexec

-- PgQ: a tick after each chunk, so that a batch is one chunk.  With
-- ticker_max_count 1, pgq.ticker() ticks whenever an event came in since
-- the last tick.  The consumers (one per bench client, c0 to c3) are
-- registered at the queue's first tick, before any event.
SELECT pgq.create_queue('bench_d' || b), pgq.set_queue_config('bench_d' || b, 'ticker_max_count', '1')
FROM unnest(ARRAY[100, 1000]) b;
SELECT pgq.register_consumer('bench_d' || b, 'c' || c)
FROM unnest(ARRAY[100, 1000]) b, generate_series(0, 3) c;

SELECT format('SELECT count(pgq.insert_event(''bench_d%s'', ''order'', value::text, key, NULL, NULL, NULL)) '
              'FROM bench.d_events WHERE i >= %s AND i < %s', b, c * b, (c + 1) * b),
       format('SELECT pgq.ticker(''bench_d%s'')', b)
FROM unnest(ARRAY[100, 1000]) b, generate_series(0, :events / b - 1) c
ORDER BY b, c \gexec

-- Every chunk must be one transaction of its own between two ticks (so a
-- batch is one chunk), and every partition must hold events/4.
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s: %s ticks, %s transactions, %s to %s events each',
                             q.queue_name, t.ticks, e.txs, e.lo, e.hi), '; ')
    INTO bad
    FROM pgq.queue q
    CROSS JOIN LATERAL (SELECT count(*) AS ticks FROM pgq.tick WHERE tick_queue = q.queue_id) t
    CROSS JOIN LATERAL (
        SELECT count(*) AS txs, min(n) AS lo, max(n) AS hi
        FROM (SELECT count(*) AS n
              FROM pgq.event_template ev
              WHERE ev.tableoid::regclass::text LIKE q.queue_data_pfx || '\_%'
              GROUP BY ev_txid) x) e
    CROSS JOIN LATERAL (SELECT substr(q.queue_name, 8)::int AS b) s
    WHERE q.queue_name IN ('bench_d100', 'bench_d1000')
      AND (e.lo <> s.b OR e.hi <> s.b
           OR e.txs <> (SELECT count(*) FROM bench.d_events) / s.b OR t.ticks <> e.txs + 1);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'PgQ batches are not as intended: %', bad;
    END IF;
    SELECT string_agg(format('partition %s has %s events', partition, end_position), '; ')
    INTO bad
    FROM eventbus.topic_partitions('bench_d')
    WHERE end_position <> (SELECT count(*) FROM bench.d_events) / 4;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'topic bench_d is unevenly filled: %', bad;
    END IF;
END
$$;

-- One PgQ batch, the way a PgQ consumer takes it: the next batch, its
-- events, done.  Returns the number of events (0 when there is no batch).
CREATE FUNCTION bench.pgq_consume(queue text, consumer text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    batch_id bigint;
    n bigint;
BEGIN
    batch_id := pgq.next_batch(queue, consumer);
    IF batch_id IS NULL THEN
        RETURN 0;
    END IF;
    SELECT count(*) INTO n FROM pgq.get_batch_events(batch_id);
    PERFORM pgq.finish_batch(batch_id);
    RETURN n;
END
$$;

-- Loads a contender's events (tables and indexes) into shared buffers
-- before its run, so that every contender starts from its data in memory
-- whatever ran before (the queue table is refilled before each run, which
-- puts it there).  Returns the blocks loaded.
CREATE EXTENSION pg_prewarm;
CREATE FUNCTION bench.d_prewarm(what text) RETURNS bigint
LANGUAGE sql AS $$
    WITH rel AS (
        SELECT s.table_oid::oid AS relid
        FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id)
        WHERE t.topic = what
        UNION ALL
        SELECT i.inhrelid
        FROM pgq.queue q JOIN pg_inherits i ON i.inhparent = q.queue_data_pfx::regclass
        WHERE q.queue_name = what
    )
    SELECT coalesce(sum(pg_prewarm(r)), 0)::bigint
    FROM (SELECT relid AS r FROM rel
          UNION ALL
          SELECT x.indexrelid FROM pg_index x JOIN rel ON x.indrelid = rel.relid) a
$$;
