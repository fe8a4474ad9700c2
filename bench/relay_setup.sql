-- Objects for bench/relay.sh, created once in the throwaway server's
-- "postgres" database (the one eventbus.database names there).
--
-- The events: event i (i = 0, 1, ...) has the key 'customer-<i % 1000 + 1>'
-- and a JSON value whose text form, which is what the relay sends to Kafka,
-- is exactly <size> bytes:
--   {"pad": "xx...", "amount": 12.5, "customer": "customer-7", "order_id": 6}
-- The relay's backlog and the file kcat produces from are both made with
-- these functions, so both send the same keys and values.

\set ON_ERROR_STOP on

CREATE EXTENSION pg_eventbus;

CREATE SCHEMA bench_relay;

CREATE FUNCTION bench_relay.event_key(i bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
RETURN 'customer-' || (i % 1000 + 1);

CREATE FUNCTION bench_relay.event_value(i bigint, size integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT
RETURN jsonb_build_object('order_id', i, 'customer', bench_relay.event_key(i), 'amount', 12.5,
    'pad', repeat('x', greatest(size - length(jsonb_build_object(
        'order_id', i, 'customer', bench_relay.event_key(i), 'amount', 12.5, 'pad', '')::text), 0)));

-- The kcat input: one "key|value" line per event, in the order published.
CREATE FUNCTION bench_relay.kcat_lines(size integer, n bigint) RETURNS SETOF text
LANGUAGE sql STABLE STRICT
BEGIN ATOMIC
    SELECT bench_relay.event_key(i) || '|' || bench_relay.event_value(i, size)::text
    FROM generate_series(0, n - 1) AS i ORDER BY i;
END;

-- Publishes events 0 .. n-1 to a topic with publish_batch, <batch> events
-- per call and per transaction.
CREATE PROCEDURE bench_relay.fill(topic text, size integer, n bigint, batch integer DEFAULT 1000)
LANGUAGE plpgsql AS $$
DECLARE
    s bigint := 0;
BEGIN
    WHILE s < n LOOP
        PERFORM count(*) FROM eventbus.publish_batch(topic,
            ARRAY(SELECT bench_relay.event_value(i, size)
                  FROM generate_series(s, least(s + batch, n) - 1) AS i ORDER BY i),
            ARRAY(SELECT bench_relay.event_key(i)
                  FROM generate_series(s, least(s + batch, n) - 1) AS i ORDER BY i));
        COMMIT;
        s := s + batch;
    END LOOP;
END $$;

-- Waits until the relay worker has stopped (stopped => true) or is running
-- with its slot (stopped => false); false after timeout seconds.  Reads
-- eventbus.relay_stats() and pg_replication_slots only: the relay_status
-- view also counts every topic's backlog by reading the events, which
-- would compete with the relay for the CPU.
CREATE FUNCTION bench_relay.wait_relay(stopped boolean, timeout double precision) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout);
BEGIN
    LOOP
        IF stopped THEN
            IF (SELECT worker_pid IS NULL FROM eventbus.relay_stats())
               AND NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'pg_eventbus relay')
               AND NOT EXISTS (SELECT FROM pg_replication_slots
                               WHERE slot_name LIKE 'pg_eventbus_relay_%' AND active) THEN
                RETURN true;
            END IF;
        ELSIF (SELECT state = 'running' AND worker_pid IS NOT NULL FROM eventbus.relay_stats())
              AND EXISTS (SELECT FROM pg_replication_slots
                          WHERE slot_name LIKE 'pg_eventbus_relay_%' AND active) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;

-- Waits until the relay's slot is confirmed at or past target: every
-- transaction that committed before target has been acknowledged by Kafka.
-- With restart, until the slot may restart decoding at target or later.
-- Returns when that was seen, or NULL after timeout seconds.
CREATE FUNCTION bench_relay.wait_slot(target pg_lsn, timeout double precision,
                                      restart boolean DEFAULT false) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout);
BEGIN
    LOOP
        IF (SELECT CASE WHEN restart THEN restart_lsn ELSE confirmed_flush_lsn END >= target
              FROM pg_replication_slots
             WHERE slot_name = (SELECT slot_name FROM eventbus.relay_stats())) THEN
            RETURN clock_timestamp();
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN NULL;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;

-- Arrival times of the latency run's messages at a Kafka consumer.
CREATE TABLE bench_relay.received (event_id uuid, received_at double precision);
