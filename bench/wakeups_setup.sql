-- Objects for bench/wakeups.sh, created once in the throwaway server's
-- "postgres" database (the one the pg_eventbus worker serves, so LISTEN
-- "eventbus.<topic>" is notified there).
--
--   wake_tp    topic of the throughput runs (8 partitions, keyed, like
--              workload A of bench/run.sh)
--   wake_lat   topic of the latency runs (8 partitions)
--   wakebench.naive
--              the naive baseline: a plain table of the same columns as a
--              topic, the position from a sequence, written with an INSERT
--              and a NOTIFY "wakebench_naive" in every transaction
--   wakebench.naive_offset
--              how far each naive subscriber has read (its "group")
--
-- The consumer groups of the subscribers are created by wakeups_driver.py
-- (one group per subscriber, so that every subscriber reads every event).

\set ON_ERROR_STOP on

CREATE EXTENSION IF NOT EXISTS pg_eventbus;

SELECT eventbus.create_topic('wake_tp', 8);
SELECT eventbus.create_topic('wake_lat', 8);

CREATE SCHEMA wakebench;

CREATE SEQUENCE wakebench.naive_seq;
CREATE TABLE wakebench.naive (
    position   bigint PRIMARY KEY DEFAULT nextval('wakebench.naive_seq'),
    partition  integer NOT NULL,
    event_id   uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    key        text,
    value      jsonb NOT NULL,
    headers    jsonb
);

CREATE TABLE wakebench.naive_offset (
    subscriber text PRIMARY KEY,
    position   bigint NOT NULL
);

-- The naive subscriber's drain: the rows after its offset, and the offset
-- moved past them, in one statement (one transaction), as
-- eventbus.poll(..., commit => true) does for a group.  Like any queue read
-- by "position > last", it can skip a row whose transaction commits after
-- a higher position's: that is one of the problems pg_eventbus solves; it
-- does not matter here, where only the wake-ups are timed.
CREATE FUNCTION wakebench.naive_drain(sub text, batch integer)
RETURNS TABLE (pos bigint, k text, v text)
LANGUAGE sql AS $$
    WITH r AS (
        SELECT n.position, n.key, n.value
        FROM wakebench.naive n
        WHERE n.position > (SELECT o.position FROM wakebench.naive_offset o WHERE o.subscriber = sub)
        ORDER BY n.position
        LIMIT batch),
    u AS (
        UPDATE wakebench.naive_offset o SET position = (SELECT max(r.position) FROM r)
        WHERE o.subscriber = sub AND EXISTS (SELECT 1 FROM r))
    SELECT r.position, r.key, r.value::text FROM r ORDER BY r.position
$$;
