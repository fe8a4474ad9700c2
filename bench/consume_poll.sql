-- Workload D: one batch per transaction, consumed by the statement that
-- polls it (commit => true moves the group past it in the same
-- transaction).  pgbench variables: group, batch.
SELECT count(*) FROM eventbus.poll(:group, 'bench_d', :batch, commit => true);
