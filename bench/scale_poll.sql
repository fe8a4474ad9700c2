-- bench/scale.sh: one poll of up to 10 events per transaction, rolled back
-- so that the group never runs out of events and every poll does the same
-- work (pgbench -D grp=poll_none or poll_retry).
BEGIN;
SELECT count(*) FROM eventbus.poll(:grp, 'scale_poll', 10);
ROLLBACK;
