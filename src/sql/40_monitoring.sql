-- Monitoring: exact lag on demand and monotonic per-topic counters.

CREATE FUNCTION eventbus.consumer_lag_exact(group_name text, topic text,
    OUT partition integer, OUT committed_position bigint, OUT end_position bigint,
    OUT lag bigint, OUT oldest_unconsumed_at timestamptz, OUT committed_at timestamptz,
    OUT member text, OUT lease_until timestamptz, OUT pending_retries bigint,
    OUT lost_events bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_group_status_exact'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.consumer_lag_exact(text, text) IS
  'As group_status(), with lag counted event by event: the committed events after the committed position that the group can read now (no rolled-back or still-committing positions). Reads every unconsumed event: for checks by hand, not for scraping. For roles with the privileges of the group''s owner and members of pg_monitor.';

CREATE FUNCTION eventbus.topic_stats_counters(
    OUT topic text, OUT published bigint, OUT consumed bigint, OUT dead_lettered bigint,
    OUT relayed bigint, OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_topic_stats'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.topic_stats_counters() IS
  'Per topic, counters kept in shared memory since stats_reset (see the topic_stats view). Topics the caller may read, all for members of pg_monitor.';

CREATE VIEW eventbus.topic_stats AS
SELECT s.topic,
       s.published,
       s.consumed,
       s.dead_lettered,
       s.relayed,
       coalesce(d.rejected, 0) AS relay_rejected,
       s.stats_reset
FROM eventbus.topic_stats_counters() s
LEFT JOIN (SELECT rd.topic, count(*) AS rejected
           FROM eventbus.relay_dead_letter rd GROUP BY rd.topic) d USING (topic);
COMMENT ON VIEW eventbus.topic_stats IS
  'Monotonic counters per topic, for rates: published (events of committed publishes), consumed (positions committed by all groups together, by commit() or poll(commit => true)), dead_lettered (events groups sent to their dead-letter topic), relayed (events Kafka acknowledged); all since stats_reset (server start or first use of the topic; NULL: not used since the server started). relay_rejected: events Kafka refused for good, from eventbus.relay_dead_letter (durable; drops when rows are deleted).';
GRANT SELECT ON eventbus.topic_stats TO PUBLIC;
