-- Workload D: one PgQ batch per transaction: next_batch, get_batch_events,
-- finish_batch (bench.pgq_consume() in consume_fill.sql), one round trip
-- like the other contenders.  Client n is PgQ consumer cn of the queue.
-- pgbench variable: queue.
SELECT bench.pgq_consume(:queue, 'c' || :client_id::text);
