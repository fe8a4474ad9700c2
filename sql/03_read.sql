-- Reading: order, limits, transactions, subtransactions, errors.
SELECT eventbus.create_topic('rd', 2);
SELECT * FROM eventbus.read('rd', 0);

SELECT count(*) FROM eventbus.publish_batch('rd',
  (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, 10) i),
  (SELECT array_agg('k0'::text) FROM generate_series(1, 10)));
SELECT eventbus.partition_for_key('k0', 2) AS p \gset
SELECT position, value FROM eventbus.read('rd', :p);
SELECT position FROM eventbus.read('rd', :p, after_position => 6);
SELECT position FROM eventbus.read('rd', :p, after_position => 2, max_events => 3);
SELECT position FROM eventbus.read('rd', :p, after_position => 9);
SELECT position FROM eventbus.read('rd', :p, after_position => 100);
SELECT topic, partition FROM eventbus.read('rd', :p, max_events => 1);

-- a rolled-back transaction publishes nothing; its positions become a gap
BEGIN;
SELECT * FROM eventbus.publish('rd', '{"rolled": "back"}', key => 'k0');
ROLLBACK;
SELECT * FROM eventbus.publish('rd', '{"after": "rollback"}', key => 'k0');
SELECT position, value FROM eventbus.read('rd', :p, after_position => 8);

-- subtransactions: a rolled-back savepoint removes its events
BEGIN;
SELECT position FROM eventbus.publish('rd', '{"sp": "kept-1"}', key => 'k0');
SAVEPOINT s1;
SELECT position FROM eventbus.publish('rd', '{"sp": "dropped"}', key => 'k0');
ROLLBACK TO SAVEPOINT s1;
SELECT position FROM eventbus.publish('rd', '{"sp": "kept-2"}', key => 'k0');
-- the transaction sees its own events
SELECT position, value FROM eventbus.read('rd', :p, after_position => 11);
COMMIT;
SELECT position, value FROM eventbus.read('rd', :p, after_position => 11);

-- a failing statement inside PL/pgSQL's exception block rolls back its event
DO $$
BEGIN
  BEGIN
    PERFORM eventbus.publish('rd', '{"in": "failed block"}', key => 'k0');
    PERFORM 1 / 0;
  EXCEPTION WHEN division_by_zero THEN
    NULL;
  END;
  PERFORM eventbus.publish('rd', '{"in": "outer"}', key => 'k0');
END $$;
SELECT position, value FROM eventbus.read('rd', :p, after_position => 14);

-- argument errors
SELECT * FROM eventbus.read('rd', 2);
SELECT * FROM eventbus.read('rd', -1);
SELECT * FROM eventbus.read('rd', NULL);
SELECT * FROM eventbus.read('rd', 0, after_position => -2);
SELECT * FROM eventbus.read('rd', 0, max_events => 0);
SELECT * FROM eventbus.read('rd', 0, max_events => 100001);
SELECT * FROM eventbus.read('nope', 0);
SELECT * FROM eventbus.read(NULL, 0);
-- NULL after_position and max_events mean the defaults
SELECT count(*) FROM eventbus.read('rd', :p, NULL, NULL);

-- per-partition ranges
SELECT * FROM eventbus.topic_partitions('rd');

-- clean up
SELECT eventbus.drop_topic('rd');
