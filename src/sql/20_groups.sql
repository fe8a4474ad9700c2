-- Consumer groups: committed positions, in-transaction and leased
-- consumption, retries and dead letters, lag.

CREATE SEQUENCE eventbus.group_id_seq AS integer;

CREATE TABLE eventbus.consumer_group (
    group_id          integer PRIMARY KEY DEFAULT nextval('eventbus.group_id_seq'),
    group_name        text NOT NULL,
    topic_id          integer NOT NULL REFERENCES eventbus.topic ON DELETE CASCADE,
    owner             regrole NOT NULL,
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    dead_letter_topic text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    paused            boolean NOT NULL DEFAULT false,
    counted_since     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_name, topic_id)
);
ALTER SEQUENCE eventbus.group_id_seq OWNED BY eventbus.consumer_group.group_id;
COMMENT ON TABLE eventbus.consumer_group IS
  'Consumer groups (internal; see the eventbus.groups and eventbus.consumer_lag views): one row per group and topic. dead_letter_topic NULL: the group consumes a dead-letter topic and keeps its failed events for redrive only; paused: poll() returns nothing; counted_since: when the counters of eventbus.group_stats started (the group''s creation, or the update to 0.2.0).';

-- Updated in place once per partition and batch; room on each page keeps
-- those updates HOT.
CREATE TABLE eventbus.group_partition (
    group_id           integer NOT NULL REFERENCES eventbus.consumer_group ON DELETE CASCADE,
    partition          integer NOT NULL,
    committed_position bigint NOT NULL,
    committed_at       timestamptz,
    member             text,
    lease_until        timestamptz,
    generation         bigint NOT NULL DEFAULT 0,
    fetched_position   bigint NOT NULL,
    fetched_session    text,
    lost_reported      bigint,
    consumed_base      bigint NOT NULL,
    dead_lettered      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, partition)
) WITH (fillfactor = 50);
COMMENT ON TABLE eventbus.group_partition IS
  'Position of each group in each partition (internal): committed_position is the last position done; member/lease_until/generation belong to leased consumption; fetched_position is the last position handed to the lease holder, in the database session fetched_session; lost_reported is the first retained position when poll() last warned that retention removed events the group had not consumed; committed_position - consumed_base is the number of positions the group committed since counted_since (a seek moves both), dead_lettered the number of events it dead-lettered (see eventbus.group_stats).';

CREATE TABLE eventbus.group_retry (
    group_id    integer NOT NULL REFERENCES eventbus.consumer_group ON DELETE CASCADE,
    partition   integer NOT NULL,
    position    bigint NOT NULL,
    attempts    integer NOT NULL,
    not_before  timestamptz NOT NULL,
    delivered   boolean NOT NULL DEFAULT false,
    reason      text,
    PRIMARY KEY (group_id, partition, position)
);
COMMENT ON TABLE eventbus.group_retry IS
  'Events a group gave back with nack() (internal): delivered again after not_before; attempts counts failed deliveries; delivered is set once redelivered, so that a commit covering it ends the retry.';
-- poll() finds a partition's due retries without reading its future ones
CREATE INDEX group_retry_due ON eventbus.group_retry (group_id, partition, not_before);

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

SELECT pg_catalog.pg_extension_config_dump('eventbus.consumer_group', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_partition', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_retry', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.dead_letter', '');

CREATE TYPE eventbus.polled_event AS (
    topic      text,
    partition  integer,
    position   bigint,
    event_id   uuid,
    key        text,
    value      jsonb,
    headers    jsonb,
    created_at timestamptz,
    attempt    integer,
    generation bigint
);
COMMENT ON TYPE eventbus.polled_event IS
  'An event as returned by eventbus.poll(); attempt is 1 on first delivery and counts redeliveries after nack(); generation is the lease generation of the partition (NULL without a lease), to pass to commit() and nack() from another session.';

CREATE FUNCTION eventbus.create_group(group_name text, topic text, start_at text DEFAULT 'latest',
                                      max_attempts integer DEFAULT 5,
                                      dead_letter_topic text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_create_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.create_group(text, text, text, integer, text) IS
  'Creates a consumer group on a topic, starting at ''earliest'', ''latest'' or a timestamp. After max_attempts deliveries a nacked event goes to dead_letter_topic (default <topic>.dlq, created for the group''s owner when the first event is dead-lettered; a group on a dead-letter topic has none and keeps its failed events for redrive). Needs SELECT on the topic.';

CREATE FUNCTION eventbus.alter_group(group_name text, topic text, max_attempts integer DEFAULT NULL,
                                     dead_letter_topic text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_alter_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.alter_group(text, text, integer, text) IS
  'Changes a group''s max_attempts or dead-letter topic; NULL leaves a setting unchanged. Group owner only.';

CREATE FUNCTION eventbus.delete_group(group_name text, topic text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_delete_group'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.delete_group(text, text) IS
  'Deletes a group on one topic, or on every topic when topic is NULL, with its positions and pending retries. Group owner only.';

CREATE FUNCTION eventbus.seek(group_name text, topic text, start_at text)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_seek_all'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.seek(text, text, text) IS
  'Moves a group on every partition to ''earliest'', ''latest'' or the first event at or after a timestamp; drops its pending retries and leases. Group owner only.';

CREATE FUNCTION eventbus.seek(group_name text, topic text, partition integer, "position" bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_seek_position'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.seek(text, text, integer, bigint) IS
  'Makes position the next event a group receives from a partition (forwards or backwards); drops the partition''s pending retries and lease. Group owner only.';

CREATE FUNCTION eventbus.poll(group_name text, topic text, max_events integer DEFAULT 100,
                              member text DEFAULT NULL, lease interval DEFAULT NULL,
                              commit boolean DEFAULT false)
RETURNS SETOF eventbus.polled_event
AS 'MODULE_PATHNAME', 'eb_poll'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION eventbus.poll(text, text, integer, text, interval, boolean) IS
  'Up to max_events events for a group, in position order per partition. Without member: the partitions returned are held by this transaction, commit() in it makes processing exactly-once, and commit => true commits them at once. With member and lease: partitions are leased to that member for the lease time. Needs SELECT on the topic.';

CREATE FUNCTION eventbus.commit(group_name text, topic text, partition integer, "position" bigint,
                                member text DEFAULT NULL, generation bigint DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'eb_commit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.commit(text, text, integer, bigint, text, bigint) IS
  'Marks every event of a partition up to and including position as done for a group (including retries at or below it). Without member, only positions a poll of the current transaction handed out (a position at or below the committed one changes nothing). With member, only positions handed to that member, and refused once the lease was taken over (generation: the lease generation poll() returned; by default the one this session was handed). To move a group on purpose, use seek().';

CREATE FUNCTION eventbus.nack(group_name text, topic text, partition integer, "position" bigint,
                              retry_after interval DEFAULT '30 seconds', reason text DEFAULT NULL,
                              member text DEFAULT NULL, generation bigint DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'eb_nack'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.nack(text, text, integer, bigint, interval, text, text, bigint) IS
  'Gives an event back: it is delivered again after retry_after without holding up the events behind it; once delivered max_attempts times it goes to the group''s dead-letter topic with the reason (the caller must be allowed to publish there). Only an event handed to the caller (as for commit()) and not committed, or a retry redelivered since. Returns ''retry'' or ''dead-lettered''.';

CREATE FUNCTION eventbus.release(group_name text, topic text, member text)
RETURNS integer
AS 'MODULE_PATHNAME', 'eb_release'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.release(text, text, text) IS
  'Ends a member''s leases at once (for a clean shutdown); uncommitted events are delivered again to the next member. Returns the number of partitions released.';

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

CREATE FUNCTION eventbus.group_status(group_name text, topic text,
    OUT partition integer, OUT committed_position bigint, OUT end_position bigint,
    OUT lag bigint, OUT oldest_unconsumed_at timestamptz, OUT committed_at timestamptz,
    OUT member text, OUT lease_until timestamptz, OUT pending_retries bigint,
    OUT lost_events bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eb_group_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.group_status(text, text) IS
  'Per partition of a group: committed and end positions, lag (positions from the first retained one after the committed position to the end position: an upper bound of the events to consume, as it also counts rolled-back and still-committing publishes; consumer_lag_exact() counts), the creation time of the oldest unconsumed event, last commit, lease, retries waiting, and events retention removed before the group consumed them (lost_events). Costs one index probe per partition. For roles with the privileges of the group''s owner and members of pg_monitor.';

CREATE VIEW eventbus.consumer_lag AS
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
  'Lag of every consumer group on every partition: positions (lag, end_position minus the next position to consume: an upper bound of the events, see consumer_lag_exact()) and time (age of the oldest unconsumed event), last commit, lease holder, retries waiting, events lost to retention, whether the group is paused. Costs O(partitions), not O(events). Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
GRANT SELECT ON eventbus.consumer_lag TO PUBLIC;

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

CREATE FUNCTION eventbus.wait(group_name text, topic text,
                              timeout interval DEFAULT '30 seconds', member text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eb_wait'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.wait(text, text, interval, text) IS
  'Blocks until the group has events to poll on the topic (true) or the timeout passes (false); an event committed just before the call is never missed. With member, counts from what that member was handed. Call it outside a REPEATABLE READ transaction. Needs SELECT on the topic.';

CREATE VIEW eventbus.group_stats WITH (security_barrier) AS
SELECT cg.group_name,
       t.topic,
       s.consumed,
       s.dead_lettered,
       cg.counted_since AS stats_reset
FROM eventbus.consumer_group cg
JOIN eventbus.topic t USING (topic_id)
CROSS JOIN LATERAL (
    SELECT coalesce(sum(gp.committed_position - gp.consumed_base), 0)::bigint AS consumed,
           coalesce(sum(gp.dead_lettered), 0)::bigint AS dead_lettered
    FROM eventbus.group_partition gp
    WHERE gp.group_id = cg.group_id) s
WHERE pg_catalog.pg_has_role(cg.owner, 'USAGE')
   OR pg_catalog.pg_has_role('pg_monitor', 'USAGE');
COMMENT ON VIEW eventbus.group_stats IS
  'Monotonic counters per consumer group and topic, for rates: consumed (positions the group committed, by commit() or poll(commit => true); a seek() is not counted) and dead_lettered (events the group sent to its dead-letter topic, or kept for redrive on a dead-letter topic), both since stats_reset (the group''s creation, or the update to 0.2.0). Kept in the group''s rows: they survive restarts and are dumped with the group; a new stats_reset means the group was created again. Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
GRANT SELECT ON eventbus.group_stats TO PUBLIC;
