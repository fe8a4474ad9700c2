-- pg_eventbus update from 0.1.0 to 0.2.0.
--
-- After this script the extension's objects equal those of a fresh 0.2.0
-- install (test/t/100_upgrade.pl compares the two with pg_dump).

\echo Use "ALTER EXTENSION pg_eventbus UPDATE TO '0.2.0'" to load this file. \quit

-- The relay's per-topic settings and records are dumped with the database.
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_partitioning', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_policy', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_dead_letter', '');

-- CloudEvents: the form of each relayed topic's messages.
CREATE TABLE eventbus.relay_format (
    topic_id           integer PRIMARY KEY,
    format             text NOT NULL CHECK (format IN ('plain', 'cloudevents')),
    cloudevents_source text
) WITH (user_catalog_table = true);
REVOKE ALL ON eventbus.relay_format FROM PUBLIC;
GRANT SELECT ON eventbus.relay_format TO pg_monitor;
SELECT pg_catalog.pg_extension_config_dump('eventbus.relay_format', '');
COMMENT ON TABLE eventbus.relay_format IS
  'Per relayed topic, the form of its Kafka messages: plain (value, key and headers as they are) or cloudevents (CloudEvents Kafka binding, binary content mode, with ce_source cloudevents_source, by default /postgresql/<database>/<topic>). Set by relay_topic(); a topic without a row is relayed plain.';

-- relay_topic() gains start_at, format and cloudevents_source; on_error
-- moves behind them (DESIGN's order).
DROP FUNCTION eventbus.relay_topic(text, text, text);
CREATE FUNCTION eventbus.relay_topic(topic text, kafka_topic text DEFAULT NULL,
                                     start_at text DEFAULT 'now',
                                     format text DEFAULT 'plain',
                                     on_error text DEFAULT 'stop',
                                     cloudevents_source text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_relay_topic_v2'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.relay_topic(text, text, text, text, text, text) IS
  'Relays the events of a topic committed from now on (start_at ''now'', the only value so far) to a Kafka topic (default: the same name). format: ''plain'' (also ''json''; the event as it is) or ''cloudevents'' (CloudEvents Kafka binding, binary content mode; cloudevents_source is ce_source, by default /postgresql/<database>/<topic>). on_error: what to do with an event Kafka refuses for good, ''stop'' (relaying waits) or ''dead_letter'' (eventbus.relay_dead_letter, relaying goes on). Topic owner only; the caller and the owner must be allowed to relay into the Kafka topic (allow_relay()).';
