-- bench/hot.sh: poll 100 events of topic hot_poll for group :grp
-- (pgbench -M prepared -D grp=...), without committing them: every poll
-- finds the same work.
SELECT count(*) FROM eventbus.poll(:grp, 'hot_poll', 100);
