-- pg_eventbus update from 0.1.0 to 0.2.0.
--
-- After this script the extension's objects equal those of a fresh 0.2.0
-- install (test/t/100_upgrade.pl compares the two with pg_dump).

\echo Use "ALTER EXTENSION pg_eventbus UPDATE TO '0.2.0'" to load this file. \quit

-- Groups and dead letters ---------------------------------------------------

ALTER TYPE eventbus.event_position ADD ATTRIBUTE duplicate boolean;
COMMENT ON TYPE eventbus.event_position IS 'Where a published event landed; duplicate: publish() found an event with the same idempotency key and returns its position (nothing was published).';

DROP FUNCTION eventbus.drop_topic(text, boolean);
CREATE FUNCTION eventbus.drop_topic(topic text, cascade boolean DEFAULT false,
                                    force boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_drop_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.drop_topic(text, boolean, boolean) IS
  'Drops a topic and all its events. Consumer groups of the topic, groups that dead-letter into it, or a relay to Kafka make it fail with an error listing them, unless force is true: then the groups of the topic are deleted and the relay stops. Objects that depend on its tables (another role''s view over eventbus_data.<topic>, say) make it fail with an error naming them, unless cascade is true: then they are dropped too. Topic owner (or a role with its privileges) only.';

ALTER TABLE eventbus.consumer_group ALTER COLUMN dead_letter_topic DROP NOT NULL;
-- without a default first: a column added with one keeps it as a "missing
-- value", which a fresh install's table does not have
ALTER TABLE eventbus.consumer_group ADD COLUMN paused boolean;
UPDATE eventbus.consumer_group SET paused = false;
ALTER TABLE eventbus.consumer_group ALTER COLUMN paused SET DEFAULT false;
ALTER TABLE eventbus.consumer_group ALTER COLUMN paused SET NOT NULL;
COMMENT ON TABLE eventbus.consumer_group IS
  'Consumer groups (internal; see the eventbus.groups and eventbus.consumer_lag views): one row per group and topic. dead_letter_topic NULL: the group consumes a dead-letter topic and keeps its failed events for redrive only; paused: poll() returns nothing.';

CREATE TABLE eventbus.dead_letter (
    group_id         integer NOT NULL REFERENCES eventbus.consumer_group ON DELETE CASCADE,
    partition        integer NOT NULL,
    position         bigint NOT NULL,
    attempts         integer NOT NULL,
    reason           text,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    dlq_topic        text,
    dlq_partition    integer,
    dlq_position     bigint,
    PRIMARY KEY (group_id, partition, position)
);
COMMENT ON TABLE eventbus.dead_letter IS
  'Events a group dead-lettered (internal): the source partition and position, and where the copy went (dlq_topic NULL: the group has no dead-letter topic). redrive() moves them back to the group as retries, purge_dead_letters() forgets them.';

CREATE TABLE eventbus.group_member (
    group_id   integer NOT NULL REFERENCES eventbus.consumer_group ON DELETE CASCADE,
    member     text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (group_id, member)
);
COMMENT ON TABLE eventbus.group_member IS
  'Leased members of each group (internal): a member counts until expires_at, the end of the lease of its last poll; partitions are shared evenly among the members that count.';

SELECT pg_catalog.pg_extension_config_dump('eventbus.dead_letter', '');

COMMENT ON FUNCTION eventbus.create_group(text, text, text, integer, text) IS
  'Creates a consumer group on a topic, starting at ''earliest'', ''latest'' or a timestamp. After max_attempts deliveries a nacked event goes to dead_letter_topic (default <topic>.dlq, created for the group''s owner when the first event is dead-lettered; a group on a dead-letter topic has none and keeps its failed events for redrive). Needs SELECT on the topic.';

CREATE FUNCTION eventbus.commit(group_name text, topic text, member text)
RETURNS integer
AS 'MODULE_PATHNAME', 'eb_commit_member'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.commit(text, text, text) IS
  'Commits everything handed to a leased member in this session, on every partition it holds (including retries delivered to it). Returns the number of partitions committed.';

CREATE FUNCTION eventbus.pause_group(group_name text, topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_pause_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.pause_group(text, text) IS
  'Pauses a group: poll() returns nothing and wait() does not return true until resume_group(). Positions, leases and retries are kept. Group owner only.';

CREATE FUNCTION eventbus.resume_group(group_name text, topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_resume_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.resume_group(text, text) IS
  'Resumes a paused group. Group owner only.';

CREATE FUNCTION eventbus.redrive(group_name text, topic text, max_events integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eb_redrive'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.redrive(text, text, integer) IS
  'Moves up to max_events (NULL: all) of a group''s dead letters, oldest first, back to that group only, as retries due now with their attempts reset; other groups of the topic do not see them again. Each dead letter is moved once, also by concurrent calls. Returns the number moved. Group owner only, with SELECT on the topic.';

CREATE FUNCTION eventbus.purge_dead_letters(group_name text, topic text, before timestamptz DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eb_purge_dead_letters'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.purge_dead_letters(text, text, timestamptz) IS
  'Forgets a group''s dead letters (those dead-lettered before a time, or all when before is NULL), so that redrive() no longer moves them; their copies in the dead-letter topic expire with its retention. Returns the number forgotten. Group owner only.';

CREATE OR REPLACE VIEW eventbus.consumer_lag AS
SELECT g.group_name,
       g.topic,
       s.partition,
       s.committed_position,
       s.end_position,
       s.lag,
       now() - s.oldest_unconsumed_at AS time_lag,
       s.committed_at AS last_commit_at,
       s.member,
       s.lease_until,
       s.pending_retries,
       s.lost_events,
       g.paused
FROM (SELECT cg.group_name, t.topic, cg.paused
      FROM eventbus.consumer_group cg
      JOIN eventbus.topic t USING (topic_id)
      WHERE pg_catalog.pg_has_role(cg.owner, 'USAGE')
         OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
      OFFSET 0) g
CROSS JOIN LATERAL eventbus.group_status(g.group_name, g.topic) s;
COMMENT ON VIEW eventbus.consumer_lag IS
  'Lag of every consumer group on every partition: events (lag) and time (age of the oldest unconsumed event), last commit, lease holder, retries waiting, events lost to retention, whether the group is paused. Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';

CREATE VIEW eventbus.groups WITH (security_barrier) AS
SELECT cg.group_name,
       t.topic,
       cg.owner,
       cg.max_attempts,
       cg.dead_letter_topic,
       cg.paused,
       cg.created_at,
       ARRAY(SELECT DISTINCT gp.member FROM eventbus.group_partition gp
             WHERE gp.group_id = cg.group_id AND gp.lease_until > pg_catalog.clock_timestamp()
             ORDER BY 1) AS members,
       (SELECT count(*) FROM eventbus.dead_letter d
        WHERE d.group_id = cg.group_id) AS dead_letters
FROM eventbus.consumer_group cg
JOIN eventbus.topic t USING (topic_id)
WHERE pg_catalog.pg_has_role(cg.owner, 'USAGE')
   OR pg_catalog.pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW eventbus.groups IS
  'Consumer groups: topic, owner, max_attempts, dead-letter topic (NULL: none, the group consumes a dead-letter topic), paused, creation time, members holding leases now, and dead letters waiting for redrive() or purge_dead_letters(). Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
GRANT SELECT ON eventbus.groups TO PUBLIC;
