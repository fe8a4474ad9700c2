-- Consumers: poll(commit => true) inside a function whose rows go to the
-- calling statement.  The function's statement reads poll's whole result,
-- but the caller may drop rows (LIMIT): refused, rolled back, nothing lost.
\set SHOW_CONTEXT never
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c37', 1);
SELECT eventbus.create_group('g37', 'c37', 'earliest');
SELECT count(*) FROM eventbus.publish_batch('c37',
  (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, 20) i));

-- PL/pgSQL: RETURN QUERY, the caller keeps one row
CREATE FUNCTION pg_temp.attacker_rq37() RETURNS SETOF eventbus.polled_event
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY SELECT * FROM eventbus.poll('g37', 'c37', 5, commit => true);
END $$;
SELECT position FROM pg_temp.attacker_rq37() LIMIT 1;
SELECT committed_position FROM eventbus.group_status('g37', 'c37');

-- SQL function, not inlined (volatile), the caller keeps one row
CREATE FUNCTION pg_temp.attacker_sql37() RETURNS SETOF eventbus.polled_event
LANGUAGE sql AS $$
  SELECT * FROM eventbus.poll('g37', 'c37', 5, commit => true)
$$;
SELECT position FROM pg_temp.attacker_sql37() LIMIT 1;
SELECT committed_position FROM eventbus.group_status('g37', 'c37');
SELECT (pg_temp.attacker_sql37()).position LIMIT 1;
SELECT committed_position FROM eventbus.group_status('g37', 'c37');

-- SQL function, inlined (stable)
CREATE FUNCTION pg_temp.attacker_sqls37() RETURNS SETOF eventbus.polled_event
LANGUAGE sql STABLE AS $$
  SELECT * FROM eventbus.poll('g37', 'c37', 5, commit => true)
$$;
SELECT position FROM pg_temp.attacker_sqls37() LIMIT 1;
SELECT committed_position FROM eventbus.group_status('g37', 'c37');

-- an exception block swallowing the error: the poll's commit is rolled back
DO $$
DECLARE
  n int;
BEGIN
  BEGIN
    SELECT count(*) INTO n FROM (SELECT * FROM eventbus.poll('g37', 'c37', 5, commit => true) LIMIT 1) s;
  EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'refused: %', SQLERRM;
  END;
END $$;
SELECT committed_position FROM eventbus.group_status('g37', 'c37');

-- UNION ALL and a window function read everything
SELECT count(*) FROM (
  SELECT position, row_number() OVER () FROM eventbus.poll('g37', 'c37', 2, commit => true)
  UNION ALL SELECT 0, 0) s;
SELECT committed_position FROM eventbus.group_status('g37', 'c37');

-- refused even when the caller reads every row: it cannot be checked
SELECT count(*) FROM pg_temp.attacker_rq37();
SELECT committed_position FROM eventbus.group_status('g37', 'c37');

-- a function that applies the events itself, called in FROM, works
CREATE TEMP TABLE done37 (position bigint);
CREATE FUNCTION pg_temp.apply37() RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO done37 SELECT position FROM eventbus.poll('g37', 'c37', 5, commit => true);
  RETURN QUERY SELECT position FROM done37 ORDER BY position;
END $$;
SELECT * FROM pg_temp.apply37() LIMIT 1;
SELECT count(*), min(position), max(position) FROM done37;
SELECT committed_position FROM eventbus.group_status('g37', 'c37');
RESET ROLE;
