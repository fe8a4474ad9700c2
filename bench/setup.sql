-- Objects for bench/run.sh, created once in the throwaway server's
-- "postgres" database (the one the pg_eventbus worker serves by default).
--
-- Every contender stores the same event: partition, position, event id,
-- creation time, key, JSON value, headers.  pg_eventbus topics get the
-- schema of eventbus.create_topic(); the plain tables copy it; PgQ keeps
-- its own event tables (the value goes to ev_data, the key to ev_extra1).

\set ON_ERROR_STOP on

CREATE EXTENSION pg_eventbus;
CREATE EXTENSION pgq;

-- A: bench_a; B: bench_b; C: bench_c1 against bench_c8.
SELECT eventbus.create_topic('bench_a', 8);
SELECT eventbus.create_topic('bench_b', 8);
SELECT eventbus.create_topic('bench_c1', 1);
SELECT eventbus.create_topic('bench_c8', 8);

SELECT pgq.create_queue('bench_a');
SELECT pgq.create_queue('bench_b');

CREATE SCHEMA bench;

CREATE SEQUENCE bench.plain_a_seq;
CREATE TABLE bench.plain_a (
    partition  integer NOT NULL,
    position   bigint NOT NULL,
    event_id   uuid NOT NULL,
    created_at timestamptz NOT NULL,
    key        text,
    value      jsonb NOT NULL,
    headers    jsonb,
    PRIMARY KEY (partition, position)
);

CREATE SEQUENCE bench.plain_b_seq;
CREATE TABLE bench.plain_b (LIKE bench.plain_a INCLUDING ALL);
