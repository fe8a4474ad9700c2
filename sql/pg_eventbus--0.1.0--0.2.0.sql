-- pg_eventbus update from 0.1.0 to 0.2.0.
--
-- After this script the extension's objects equal those of a fresh 0.2.0
-- install (test/t/100_upgrade.pl compares the two with pg_dump).

\echo Use "ALTER EXTENSION pg_eventbus UPDATE TO '0.2.0'" to load this file. \quit

-- Metrics and alerts: lag from positions (the library computes it; only the
-- comments change), exact lag on demand, per-topic counters.
COMMENT ON FUNCTION eventbus.group_status(text, text) IS
'Per partition of a group: committed and end positions, lag (positions from the first retained one after the committed position to the end position: an upper bound of the events to consume, as it also counts rolled-back and still-committing publishes; consumer_lag_exact() counts), the creation time of the oldest unconsumed event, last commit, lease, retries waiting, and events retention removed before the group consumed them (lost_events). Costs one index probe per partition. For roles with the privileges of the group''s owner and members of pg_monitor.';
COMMENT ON VIEW eventbus.consumer_lag IS
'Lag of every consumer group on every partition: positions (lag, end_position minus the next position to consume: an upper bound of the events, see consumer_lag_exact()) and time (age of the oldest unconsumed event), last commit, lease holder, retries waiting, events lost to retention. Costs O(partitions), not O(events). Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
COMMENT ON FUNCTION eventbus.relay_backlog() IS
'For each relayed topic, positions below the read horizon after the last one Kafka acknowledged, summed over partitions: an upper bound of the events waiting for Kafka (it also counts rolled-back publishes), from shared memory alone (NULL until the relay acknowledged an event of the topic since the server started). Superusers and pg_monitor only.';

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
