-- Consumers: poll(commit => true) commits only what its statement reads.
-- Forms that read part of the result are refused; the error rolls the
-- transaction back, poll()'s commit included, so no event is lost.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c32', 1);
SELECT eventbus.create_group('g32', 'c32', 'earliest');
SELECT count(*) FROM eventbus.publish_batch('c32',
  (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, 50) i));
CREATE TEMP TABLE done32 (position bigint);

-- LIMIT 2 of 50: refused, the position does not move
SELECT position FROM eventbus.poll('g32', 'c32', 100, commit => true) LIMIT 2;
SELECT committed_position FROM eventbus.group_status('g32', 'c32');
-- a sort under a limit reads everything, the limit still drops rows
SELECT position FROM eventbus.poll('g32', 'c32', 100, commit => true)
 ORDER BY position DESC LIMIT 2;
-- in a CTE, under a limit
WITH p AS MATERIALIZED (SELECT * FROM eventbus.poll('g32', 'c32', 100, commit => true))
SELECT position FROM p LIMIT 1;
-- a semi-join stops at the first row
SELECT EXISTS (SELECT 1 FROM eventbus.poll('g32', 'c32', 100, commit => true));
-- in the select list
SELECT (eventbus.poll('g32', 'c32', 100, commit => true)).position LIMIT 1;
SELECT count(*) FROM (SELECT eventbus.poll('g32', 'c32', 3, commit => true)) s;
SELECT committed_position FROM eventbus.group_status('g32', 'c32');

-- a cursor that fetches 2 rows, then COMMIT
BEGIN;
DECLARE c CURSOR FOR SELECT position FROM eventbus.poll('g32', 'c32', 100, commit => true);
FETCH 2 FROM c;
COMMIT;
SELECT committed_position FROM eventbus.group_status('g32', 'c32');

-- a PL/pgSQL loop that exits early
DO $$
DECLARE
  ev record;
BEGIN
  FOR ev IN SELECT * FROM eventbus.poll('g32', 'c32', 100, commit => true) LOOP
    INSERT INTO done32 VALUES (ev.position);
    EXIT WHEN ev.position >= 1;
  END LOOP;
END
$$;
-- ... also when the batch is smaller than the loop's fetch of 10 rows, which
-- the executor reads to its end at once: refused in any FOR loop
DO $$
DECLARE
  ev record;
BEGIN
  FOR ev IN SELECT * FROM eventbus.poll('g32', 'c32', 3, commit => true) LOOP
    INSERT INTO done32 VALUES (ev.position);
    EXIT;
  END LOOP;
END
$$;
-- SELECT INTO keeps one row
DO $$
DECLARE
  ev record;
BEGIN
  SELECT * INTO ev FROM eventbus.poll('g32', 'c32', 100, commit => true);
  INSERT INTO done32 VALUES (ev.position);
END
$$;
SELECT count(*) FROM done32;
SELECT committed_position FROM eventbus.group_status('g32', 'c32');

-- reading the whole result works: INSERT ... SELECT
INSERT INTO done32
SELECT position FROM eventbus.poll('g32', 'c32', 10, commit => true);
SELECT count(*), min(position), max(position) FROM done32;
SELECT committed_position FROM eventbus.group_status('g32', 'c32');
-- a CTE read in full
WITH p AS (SELECT * FROM eventbus.poll('g32', 'c32', 10, commit => true))
INSERT INTO done32 SELECT position FROM p;
SELECT count(*), min(position), max(position) FROM done32;
-- a PL/pgSQL FOR loop is a cursor: refused even when it reads everything
DO $$
DECLARE
  ev record;
BEGIN
  FOR ev IN SELECT * FROM eventbus.poll('g32', 'c32', 20, commit => true) LOOP
    INSERT INTO done32 VALUES (ev.position);
  END LOOP;
END
$$;
-- in a transaction block, then rolled back: nothing moves
BEGIN;
INSERT INTO done32 SELECT position FROM eventbus.poll('g32', 'c32', 5, commit => true);
ROLLBACK;
SELECT count(*), count(DISTINCT position), min(position), max(position) FROM done32;
SELECT committed_position FROM eventbus.group_status('g32', 'c32');
-- the rest, and nothing is left
SELECT count(*) FROM eventbus.poll('g32', 'c32', 100, commit => true);
SELECT count(*) FROM eventbus.poll('g32', 'c32', 100, commit => true);
SELECT committed_position FROM eventbus.group_status('g32', 'c32');
RESET ROLE;
