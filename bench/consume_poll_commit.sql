-- Workload D: one batch per transaction, polled, then committed with
-- eventbus.commit() for each partition it came from, in the same
-- transaction (the statement is the transaction).  pgbench variables:
-- group, batch.
SELECT sum(s.n)
FROM (SELECT partition, max(position) AS last, count(*) AS n
      FROM eventbus.poll(:group, 'bench_d', :batch)
      GROUP BY partition) s
CROSS JOIN LATERAL eventbus.commit(:group, 'bench_d', s.partition, s.last) c;
