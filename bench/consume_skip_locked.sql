-- Workload D: the hand-written queue, one batch per transaction: the
-- oldest rows nobody else has locked, deleted and returned.  pgbench
-- variable: batch.
WITH d AS (
    DELETE FROM bench.d_queue
    WHERE id IN (SELECT id FROM bench.d_queue ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id, key, value, created_at)
SELECT count(*) FROM d;
