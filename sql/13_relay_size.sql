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

-- The copy nack() sends to a relayed dead-letter topic: the reason the
-- consumer gives is cut to 1024 bytes in its headers (eventbus.dead_letter
-- keeps it whole), and a copy too large to relay is refused.
SELECT eventbus.create_topic('sized_src', 1);
SELECT eventbus.create_topic('sized_src.dlq', 1);
UPDATE eventbus.topic SET relay_to = 'sized-dlq' WHERE topic = 'sized_src.dlq';
SELECT eventbus.create_group('sized_workers', 'sized_src', 'earliest', max_attempts => 1);
SELECT position FROM eventbus.publish('sized_src', '{"small": true}');
SELECT position FROM eventbus.publish('sized_src', '{"small": true}');
SELECT position FROM eventbus.publish('sized_src', to_jsonb(repeat('x', 999300)));
-- a 2 MB reason
BEGIN;
SELECT position FROM eventbus.poll('sized_workers', 'sized_src', 1);
SELECT eventbus.nack('sized_workers', 'sized_src', 0, 0, reason => repeat('r', 2000000));
SELECT eventbus.commit('sized_workers', 'sized_src', 0, 0);
COMMIT;
SELECT octet_length(headers->>'eventbus-dlq-reason') AS reason_in_headers
  FROM eventbus.read('sized_src.dlq', 0);
SELECT octet_length(reason) AS reason_kept FROM eventbus.dead_letter;
-- a multibyte reason is cut at a character boundary
BEGIN;
SELECT position FROM eventbus.poll('sized_workers', 'sized_src', 1);
SELECT eventbus.nack('sized_workers', 'sized_src', 0, 1, reason => repeat('é', 600));
SELECT eventbus.commit('sized_workers', 'sized_src', 0, 1);
COMMIT;
SELECT octet_length(headers->>'eventbus-dlq-reason') AS reason_in_headers,
       headers->>'eventbus-dlq-reason' = repeat('é', 512) AS whole_characters
  FROM eventbus.read('sized_src.dlq', 0) ORDER BY position DESC LIMIT 1;
-- an event that fits, whose copy with the dead-letter headers does not
BEGIN;
SELECT position FROM eventbus.poll('sized_workers', 'sized_src', 1);
\set VERBOSITY default
SELECT eventbus.nack('sized_workers', 'sized_src', 0, 2, reason => 'too big to relay');
\set VERBOSITY terse
ROLLBACK;
-- to a dead-letter topic that is not relayed, the same copy goes
UPDATE eventbus.topic SET relay_to = NULL WHERE topic = 'sized_src.dlq';
BEGIN;
SELECT position FROM eventbus.poll('sized_workers', 'sized_src', 1);
SELECT eventbus.nack('sized_workers', 'sized_src', 0, 2, reason => 'too big to relay');
SELECT eventbus.commit('sized_workers', 'sized_src', 0, 2);
COMMIT;
SELECT count(*) AS dead_letter_copies FROM eventbus.read('sized_src.dlq', 0);
SELECT eventbus.delete_group('sized_workers', 'sized_src');
SELECT eventbus.drop_topic('sized_src.dlq');
SELECT eventbus.drop_topic('sized_src');
UPDATE eventbus.topic SET relay_to = NULL WHERE topic IN ('sized_relayed', 'sized_ce');
DELETE FROM eventbus.relay_format
 WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'sized_ce');
SELECT eventbus.drop_topic('sized');
SELECT eventbus.drop_topic('sized_relayed');
SELECT eventbus.drop_topic('sized_ce');
