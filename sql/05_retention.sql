-- Segments and retention through run_maintenance() (the background worker
-- runs the same pass; in this test it serves another database).  Each call
-- maintains every topic; rows report what it did.
SELECT eventbus.create_topic('ret', 2, retention => '1 second');
SELECT eventbus.create_topic('ret-empty', 1, retention => '1 second');
SELECT eventbus.create_topic('forever', 1);
SELECT segment, activated_at IS NOT NULL AS active, start_positions
  FROM eventbus.segment WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'ret')
 ORDER BY segment;
SELECT eventbus.partition_for_key('a', 2) AS p \gset
SELECT count(*) FROM eventbus.publish_batch('ret', array_fill('{"seg": 1}'::jsonb, ARRAY[5]), array_fill('a'::text, ARRAY[5]));
SELECT * FROM eventbus.publish('forever', '{}');

-- Once a segment is older than retention / 8 and not empty, the spare
-- becomes current and a new spare is created.  An empty segment, or a topic
-- without retention, is left alone.
SELECT pg_sleep(0.3);
SELECT * FROM eventbus.run_maintenance();
SELECT count(*) FROM eventbus.publish_batch('ret', array_fill('{"seg": 2}'::jsonb, ARRAY[5]), array_fill('a'::text, ARRAY[5]));
SELECT segment, activated_at IS NOT NULL AS active, start_positions
  FROM eventbus.segment WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'ret')
 ORDER BY segment;
-- reading crosses segments in position order
SELECT position, value FROM eventbus.read('ret', :p);
SELECT position, value FROM eventbus.read('ret', :p, after_position => 4, max_events => 2);

-- Once segment 2 has been current for longer than the retention, every event
-- of segment 1 is older than that: segment 1 is dropped, as a whole.
SELECT pg_sleep(1.2);
SELECT * FROM eventbus.run_maintenance();
SELECT count(*) FROM pg_class WHERE relname = 'ret$1';
SELECT position, value FROM eventbus.read('ret', :p);
SELECT first_position, end_position FROM eventbus.topic_partitions('ret') WHERE partition = :p;
-- positions continue
SELECT * FROM eventbus.publish('ret', '{"seg": 3}', key => 'a');

SELECT pg_sleep(1.2);
SELECT * FROM eventbus.run_maintenance();
SELECT position, value FROM eventbus.read('ret', :p);
SELECT segment, start_positions
  FROM eventbus.segment WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'ret')
 ORDER BY segment;

-- a failure maintaining one topic is reported and the others go on: an
-- event trigger refuses ret-empty's next segment
CREATE FUNCTION public.refuse_ret_empty() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands()
             WHERE object_identity LIKE '%ret-empty$3%') THEN
    RAISE EXCEPTION 'no new segment for ret-empty today';
  END IF;
END
$$;
CREATE EVENT TRIGGER refuse_ret_empty ON ddl_command_end
  EXECUTE FUNCTION public.refuse_ret_empty();
SELECT eventbus.publish('ret-empty', '{}');
SELECT * FROM eventbus.publish('ret', '{"seg": 4}', key => 'a');
SELECT pg_sleep(0.3);
SELECT topic, action, segment, left(detail, 40) AS detail FROM eventbus.run_maintenance() ORDER BY topic, action;
DROP EVENT TRIGGER refuse_ret_empty;
DROP FUNCTION public.refuse_ret_empty();

SELECT eventbus.drop_topic('forever');
SELECT eventbus.drop_topic('ret-empty');
SELECT eventbus.drop_topic('ret');
