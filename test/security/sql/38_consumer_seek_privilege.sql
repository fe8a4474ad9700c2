-- Consumers: seek() needs SELECT on the topic, like the other consuming
-- calls.  Seeking by time reads the events' times: a role whose SELECT was
-- revoked could still learn when events were published through its group.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c38', 1);
GRANT SELECT ON eventbus_data."c38" TO eb_team_b;
SELECT count(*) FROM eventbus.publish_batch('c38',
  (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, 3) i));
SET ROLE eb_team_b;
SELECT eventbus.create_group('g38', 'c38', 'earliest');
SELECT eventbus.seek('g38', 'c38', now()::text);
SELECT eventbus.seek('g38', 'c38', 0, 1);
SET ROLE eb_team_a;
REVOKE SELECT ON eventbus_data."c38" FROM eb_team_b;
SET ROLE eb_team_b;
SELECT eventbus.seek('g38', 'c38', '-infinity');
SELECT eventbus.seek('g38', 'c38', 'latest');
SELECT eventbus.seek('g38', 'c38', 0, 0);
SELECT eventbus.poll('g38', 'c38');
-- the group can still be deleted
SELECT eventbus.delete_group('g38', 'c38');
RESET ROLE;
