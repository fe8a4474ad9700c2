-- Publishing: partitioning, headers, batches, idempotency keys, errors.

-- Kafka's default partitioner: murmur2 test vectors from Kafka's own test
-- suite (UtilsTest.testMurmur2).  With 2147483647 partitions the result is
-- the positive (sign bit cleared) 31-bit hash, which must equal the vector
-- with its sign bit cleared.
SELECT k, eventbus.partition_for_key(k, 2147483647) = (v & 2147483647) AS matches_kafka
  FROM (VALUES ('21', -973932308),
               ('foobar', -790332482),
               ('a-little-bit-long-string', -985981536),
               ('a-little-bit-longer-string', -1486304829),
               ('lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971),
               ('abc', 479470107)) AS t(k, v);
SELECT eventbus.partition_for_key('customer-7', 4), eventbus.partition_for_key('', 4);
SELECT eventbus.partition_for_key('x', 0);
SELECT eventbus.partition_for_key(NULL, 4);

-- the same key always lands in the partition the partitioner names
SELECT eventbus.create_topic('pub', 4);
SELECT bool_and(p.partition = eventbus.partition_for_key('key-' || i, 4)) AS keyed_ok
  FROM generate_series(1, 200) i,
       LATERAL eventbus.publish('pub', jsonb_build_object('i', i), key => 'key-' || i) p;

-- positions per partition start at 0 and have no gaps
SELECT partition, min(position), max(position), count(*)
  FROM generate_series(0, 3) part, LATERAL eventbus.read('pub', part, max_events => 1000)
 GROUP BY partition ORDER BY partition;

-- keyless events are spread over partitions
SELECT count(DISTINCT (eventbus.publish('pub', '{}')).partition) AS partitions_used
  FROM generate_series(1, 40);

-- explicit partition, headers, event id and timestamp
SELECT partition, position FROM eventbus.publish('pub', '{"explicit": true}', key => 'k',
       headers => '{"trace-id": "abc", "empty": null}', partition => 2);
SELECT key, value, headers, event_id IS NOT NULL AS has_id,
       created_at BETWEEN now() - interval '1 minute' AND clock_timestamp() AS fresh
  FROM eventbus.read('pub', 2, max_events => 1000) WHERE value ? 'explicit';

-- event ids are version 7 (time-ordered) and increase within a session
SELECT count(*) AS v7 FROM eventbus.read('pub', 0, max_events => 1000)
 WHERE substr(event_id::text, 15, 1) = '7' AND substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b');
SELECT bool_and(a < b) AS ids_increase FROM (
  SELECT event_id AS a, lead(event_id) OVER (ORDER BY position) AS b
    FROM eventbus.read('pub', 1, max_events => 1000)) s WHERE b IS NOT NULL;

-- errors
SELECT eventbus.publish('pub', NULL);
SELECT eventbus.publish(NULL, '{}');
SELECT eventbus.publish('missing', '{}');
SELECT eventbus.publish('bad name', '{}');
SELECT eventbus.publish('pub', '{}', partition => 4);
SELECT eventbus.publish('pub', '{}', partition => -1);
SELECT eventbus.publish('pub', '{}', headers => '[1, 2]');
SELECT eventbus.publish('pub', '{}', headers => '"scalar"');
SELECT eventbus.publish('pub', '{}', headers => '{"n": 1}');
SELECT eventbus.publish('pub', '{}', headers => '{"o": {"x": "y"}}');
SELECT eventbus.publish('pub', '{}', headers => '{"eventbus-topic": "spoof"}');
SELECT eventbus.publish('pub', '{}', headers => '{"EventBus-Position": "1"}');
SET eventbus.max_event_size = '2kB';
SELECT eventbus.publish('pub', to_jsonb(repeat('x', 3000)));
SELECT eventbus.publish('pub', '{}', key => repeat('k', 3000));
RESET eventbus.max_event_size;
SELECT partition FROM eventbus.publish('pub', to_jsonb(repeat('x', 300000)), partition => 3);
SELECT length(value #>> '{}') FROM eventbus.read('pub', 3, max_events => 1000)
 WHERE jsonb_typeof(value) = 'string';

-- publish_batch: order within a partition follows the input
SELECT eventbus.create_topic('batch', 3);
SELECT * FROM eventbus.publish_batch('batch',
  ARRAY['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}', '{"n":5}']::jsonb[],
  ARRAY['a', 'b', 'a', 'c', 'a'],
  ARRAY['{"h":"1"}', NULL, NULL, NULL, '{"h":"5"}']::jsonb[]);
SELECT partition, position, key, value, headers
  FROM generate_series(0, 2) part, LATERAL eventbus.read('batch', part)
 ORDER BY partition, position;
-- keyless events of one call go to one partition
SELECT count(DISTINCT partition) FROM eventbus.publish_batch('batch',
  array_fill('{}'::jsonb, ARRAY[50]));
SELECT count(*) FROM eventbus.publish_batch('batch', '{}'::jsonb[]);
SELECT eventbus.publish_batch('batch', NULL);
SELECT eventbus.publish_batch('batch', ARRAY['{}', NULL]::jsonb[]);
SELECT eventbus.publish_batch('batch', ARRAY['{}', '{}']::jsonb[], ARRAY['only-one']);
SELECT eventbus.publish_batch('batch', ARRAY['{}']::jsonb[], headers => ARRAY['{}', '{}']::jsonb[]);
SELECT eventbus.publish_batch('batch', ARRAY[['{}'], ['{}']]::jsonb[]);
SELECT eventbus.publish_batch('batch', ARRAY['{}']::jsonb[], headers => ARRAY['{"eventbus-lsn": "0"}']::jsonb[]);

-- idempotency keys: a repeat returns the first position and adds nothing
SELECT eventbus.create_topic('idem', 2);
SELECT * FROM eventbus.publish('idem', '{"try": 1}', idempotency_key => 'order-42', partition => 1);
SELECT * FROM eventbus.publish('idem', '{"try": 2}', idempotency_key => 'order-42', partition => 0);
SELECT * FROM eventbus.publish('idem', '{"try": 3}', key => 'other', idempotency_key => 'order-42');
SELECT * FROM eventbus.publish('idem', '{"try": 1}', idempotency_key => 'order-43', partition => 0);
SELECT partition, position, value FROM generate_series(0, 1) part,
       LATERAL eventbus.read('idem', part) ORDER BY partition, position;
-- the same key on another topic is independent
SELECT (eventbus.publish('pub', '{}', idempotency_key => 'order-42')).position >= 0 AS published;
-- a rolled-back first publish does not count
BEGIN;
SELECT * FROM eventbus.publish('idem', '{"try": "rb"}', idempotency_key => 'order-44', partition => 1);
ROLLBACK;
SELECT * FROM eventbus.publish('idem', '{"try": "after"}', idempotency_key => 'order-44', partition => 1);
-- twice in one transaction
BEGIN;
SELECT * FROM eventbus.publish('idem', '{"t": 1}', idempotency_key => 'order-45', partition => 0);
SELECT * FROM eventbus.publish('idem', '{"t": 2}', idempotency_key => 'order-45', partition => 1);
COMMIT;
SELECT eventbus.publish('idem', '{}', idempotency_key => '');

-- read-only transactions cannot publish
BEGIN READ ONLY;
SELECT eventbus.publish('pub', '{}');
ROLLBACK;

-- events are stored append-only: publishing never updates or deletes
SELECT pg_stat_force_next_flush();
SELECT sum(n_tup_ins) > 200 AS inserts_counted, sum(n_tup_upd + n_tup_del) AS updates_and_deletes
  FROM pg_stat_user_tables WHERE schemaname = 'eventbus_data';

-- the segment's own indexes are maintained, also after they were rebuilt
REINDEX TABLE CONCURRENTLY eventbus_data."pub$1";
SELECT position AS new_pos FROM eventbus.publish('pub', '{"after": "reindex"}', partition => 0,
                                                 idempotency_key => 'after-reindex') \gset
SET enable_seqscan = off;
SELECT count(*) FROM eventbus_data."pub$1" WHERE partition = 0 AND position = :new_pos;
SELECT position = :new_pos AS same FROM eventbus_data."pub$1" WHERE idempotency_key = 'after-reindex';
RESET enable_seqscan;
SELECT value FROM eventbus.read('pub', 0, max_events => 1000) WHERE value ? 'after';
-- an index of anyone else (only a superuser can add one) is not maintained
-- in silence: publishing refuses the segment (this session published to it
-- before: what it knew of the segment's indexes is forgotten)
CREATE INDEX pub_event_id ON eventbus_data."pub$1" (event_id);
SELECT eventbus.publish('pub', '{"indexed": 1}', partition => 0);
DROP INDEX eventbus_data.pub_event_id;
SELECT count(*) FROM eventbus.publish('pub', '{"indexed": 0}', partition => 0);

-- a topic table whose columns were altered is refused, not trusted
SELECT eventbus.create_topic('altered');
SELECT count(*) FROM eventbus.publish('altered', '{"before": "alter"}');
ALTER TABLE eventbus_data.altered ALTER COLUMN position TYPE text;
SELECT eventbus.publish('altered', '{}');
SELECT * FROM eventbus.read('altered', 0);
ALTER TABLE eventbus_data.altered ALTER COLUMN position TYPE bigint USING position::bigint;
ALTER TABLE eventbus_data.altered ADD COLUMN extra int;
SELECT eventbus.publish('altered', '{}');
SELECT eventbus.drop_topic('altered');

-- clean up
SELECT eventbus.drop_topic('pub');
SELECT eventbus.drop_topic('batch');
SELECT eventbus.drop_topic('idem');
