-- eventbus.max_event_size: its default stays below Kafka's default limit
-- (1048588 bytes), and an event of a relayed topic is measured as the
-- relay will send it: the value as JSON text, with the key and the headers.
SHOW eventbus.max_event_size;

SELECT eventbus.create_topic('sized', 1);
SELECT eventbus.create_topic('sized_relayed', 1);
SELECT eventbus.create_topic('sized_ce', 1);
-- relay mappings as relay_topic() records them (the relay does not serve
-- this database, so relay_topic() itself would refuse)
UPDATE eventbus.topic SET relay_to = 'sized-kafka' WHERE topic IN ('sized_relayed', 'sized_ce');
INSERT INTO eventbus.relay_format (topic_id, format, cloudevents_source)
SELECT topic_id, 'cloudevents', '/orders' FROM eventbus.topic WHERE topic = 'sized_ce';

-- 400 kB as stored, 2.4 MB as JSON text (every character is \u0001)
SELECT pg_column_size(to_jsonb(repeat(chr(1), 400000))) AS stored,
       octet_length(to_jsonb(repeat(chr(1), 400000))::text) AS as_text;

\set VERBOSITY default
-- a topic that is not relayed: the stored size counts
SELECT partition FROM eventbus.publish('sized', to_jsonb(repeat(chr(1), 400000)));
SELECT partition FROM eventbus.publish('sized', to_jsonb(repeat('x', 1000000)));
-- a relayed topic: the size as sent
SELECT partition FROM eventbus.publish('sized_relayed', to_jsonb(repeat(chr(1), 400000)));
SELECT count(*) FROM eventbus.publish_batch('sized_relayed',
    ARRAY['{"small": true}'::jsonb, jsonb_build_object('s', repeat(E'\n', 600000))]);
-- numbers count as printed: 1e100000 is 100001 digits
SELECT partition FROM eventbus.publish('sized_relayed',
    (SELECT jsonb_agg(1e100000::numeric) FROM generate_series(1, 10)));
\set VERBOSITY terse
-- what fits is accepted: large plain text, escapes in small events
SELECT partition FROM eventbus.publish('sized_relayed', to_jsonb(repeat('x', 990000)), key => 'k');
SELECT partition FROM eventbus.publish('sized_relayed', to_jsonb(repeat(chr(1), 150000)));
SELECT partition FROM eventbus.publish('sized_relayed', (SELECT jsonb_agg(1e100000::numeric) FROM generate_series(1, 9)));
-- the key and the headers count too
SELECT partition FROM eventbus.publish('sized_relayed', to_jsonb(repeat(chr(1), 150000)),
    key => repeat('k', 100000), headers => jsonb_build_object('h', repeat('v', 50000)));
-- CloudEvents adds its attributes: a value that fits a plain topic by a
-- few bytes does not fit one relayed as CloudEvents
SELECT partition FROM eventbus.publish('sized_relayed', to_jsonb(repeat('x', 999200)));
SELECT partition FROM eventbus.publish('sized_ce', to_jsonb(repeat('x', 999200)));
-- a lower limit applies the same way
SET eventbus.max_event_size = '64kB';
SELECT partition FROM eventbus.publish('sized_relayed', to_jsonb(repeat(chr(1), 20000)));
SELECT partition FROM eventbus.publish('sized', to_jsonb(repeat(chr(1), 20000)));
RESET eventbus.max_event_size;

SELECT count(*) AS relayed_events FROM eventbus_data.sized_relayed;
UPDATE eventbus.topic SET relay_to = NULL WHERE topic IN ('sized_relayed', 'sized_ce');
DELETE FROM eventbus.relay_format
 WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'sized_ce');
SELECT eventbus.drop_topic('sized');
SELECT eventbus.drop_topic('sized_relayed');
SELECT eventbus.drop_topic('sized_ce');
