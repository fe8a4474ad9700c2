-- Consumer groups: committed positions, in-transaction and leased
-- consumption, retries and dead letters, lag.

CREATE SEQUENCE eventbus.group_id_seq AS integer;

CREATE TABLE eventbus.consumer_group (
    group_id          integer PRIMARY KEY DEFAULT nextval('eventbus.group_id_seq'),
    group_name        text NOT NULL,
    topic_id          integer NOT NULL REFERENCES eventbus.topic ON DELETE CASCADE,
    owner             regrole NOT NULL,
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    dead_letter_topic text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_name, topic_id)
);
ALTER SEQUENCE eventbus.group_id_seq OWNED BY eventbus.consumer_group.group_id;
COMMENT ON TABLE eventbus.consumer_group IS
  'Consumer groups (internal; see the eventbus.consumer_lag view): one row per group and topic.';

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
    PRIMARY KEY (group_id, partition)
) WITH (fillfactor = 50);
COMMENT ON TABLE eventbus.group_partition IS
  'Position of each group in each partition (internal): committed_position is the last position done; member/lease_until/generation belong to leased consumption; fetched_position is the last position handed to the lease holder, in the database session fetched_session; lost_reported is the first retained position when poll() last warned that retention removed events the group had not consumed.';

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

SELECT pg_catalog.pg_extension_config_dump('eventbus.consumer_group', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_partition', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.group_retry', '');

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
  'Creates a consumer group on a topic, starting at ''earliest'', ''latest'' or a timestamp. After max_attempts deliveries a nacked event goes to dead_letter_topic (default <topic>.dlq, created if missing). Needs SELECT on the topic.';

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
       s.lost_events
FROM (SELECT cg.group_name, t.topic
      FROM eventbus.consumer_group cg
      JOIN eventbus.topic t USING (topic_id)
      WHERE pg_catalog.pg_has_role(cg.owner, 'USAGE')
         OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
      OFFSET 0) g
CROSS JOIN LATERAL eventbus.group_status(g.group_name, g.topic) s;
COMMENT ON VIEW eventbus.consumer_lag IS
  'Lag of every consumer group on every partition: positions (lag, end_position minus the next position to consume: an upper bound of the events, see consumer_lag_exact()) and time (age of the oldest unconsumed event), last commit, lease holder, retries waiting, events lost to retention. Costs O(partitions), not O(events). Shows the groups whose owner''s privileges the role has; members of pg_monitor see all.';
GRANT SELECT ON eventbus.consumer_lag TO PUBLIC;

CREATE FUNCTION eventbus.wait(group_name text, topic text,
                              timeout interval DEFAULT '30 seconds', member text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eb_wait'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus.wait(text, text, interval, text) IS
  'Blocks until the group has events to poll on the topic (true) or the timeout passes (false); an event committed just before the call is never missed. With member, counts from what that member was handed. Call it outside a REPEATABLE READ transaction. Needs SELECT on the topic.';
