-- Workload D: the smallest write transaction, a one-row UPDATE: what every
-- consumer transaction pays to commit (synchronous_commit = on).
UPDATE bench.d_floor SET n = n + 1 WHERE id = 1;
