-- Issue 9, item 8: which Kafka topics a role may relay into and send outbox
-- messages to is decided by a superuser (eventbus.relay_allowed).
-- The security instance has no relay: once allowed, the calls stop at the
-- check that the relay serves this database (item 17).
SET ROLE eb_team_a;
SELECT eventbus.create_topic('sec_relay_a');
-- not allowed: refused, naming allow_relay
SELECT eventbus.relay_topic('sec_relay_a', 'team-a.orders');
SELECT eventbus.relay_topic('sec_relay_a');
-- only superusers change the allow-list
SELECT eventbus.allow_relay('eb_team_a', 'team-a.*');
SELECT eventbus.disallow_relay('eb_team_a', 'team-a.*');
INSERT INTO eventbus.relay_allowed VALUES ('eb_team_a', '*');
RESET ROLE;

-- even with EXECUTE granted, the function itself checks for a superuser
GRANT EXECUTE ON FUNCTION eventbus.allow_relay(regrole, text) TO eb_attacker;
SET ROLE eb_attacker;
SELECT eventbus.allow_relay('eb_attacker', '*');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION eventbus.allow_relay(regrole, text) FROM eb_attacker;

-- bad input
SELECT eventbus.allow_relay('eb_team_a', 'bad topic');
SELECT eventbus.allow_relay('eb_team_a', 'a*b');
SELECT eventbus.allow_relay('eb_team_a', NULL);
SELECT eventbus.allow_relay(NULL, 'x');
SELECT eventbus.allow_relay(0::oid::regrole, 'x');

-- a superuser allows a prefix
SELECT eventbus.allow_relay('eb_team_a', 'team-a.*');
SELECT eventbus.allow_relay('eb_team_a', 'team-a.*');   -- twice: one row
SELECT role, kafka_topic FROM eventbus.relay_allowed ORDER BY 1, 2;

SET ROLE eb_team_a;
-- allowed now: the next check is that the relay serves this database
SELECT eventbus.relay_topic('sec_relay_a', 'team-a.orders');
-- other Kafka topics are still refused
SELECT eventbus.relay_topic('sec_relay_a', 'team-b.orders');
RESET ROLE;

-- another role's topic: the attacker cannot relay it (not the owner), nor
-- relay its own topic into team a's Kafka topics
SET ROLE eb_attacker;
SELECT eventbus.create_topic('sec_relay_evil');
SELECT eventbus.relay_topic('sec_relay_a', 'team-a.orders');
SELECT eventbus.relay_topic('sec_relay_evil', 'team-a.orders');
RESET ROLE;

-- a superuser relaying a topic whose owner is not allowed is refused too:
-- the relay checks the owner for every event
SELECT eventbus.relay_topic('sec_relay_evil', 'team-a.orders');

-- the outbox: EXECUTE is granted, sending is allowed per Kafka topic
GRANT EXECUTE ON FUNCTION eventbus.outbox(text, jsonb, text, jsonb) TO eb_team_a, eb_attacker;
SET ROLE eb_attacker;
SELECT eventbus.outbox('team-a.orders', '{"forged": true}');
RESET ROLE;
SET ROLE eb_team_a;
SELECT eventbus.outbox('team-b.orders', '{"x": 1}');
SELECT eventbus.outbox('team-a.mails', '{"x": 1}');
RESET ROLE;

-- members of an allowed role are allowed
CREATE ROLE eb_team_a_member IN ROLE eb_team_a;
GRANT EXECUTE ON FUNCTION eventbus.outbox(text, jsonb, text, jsonb) TO eb_team_a_member;
SET ROLE eb_team_a_member;
SELECT eventbus.outbox('team-a.mails', '{"x": 1}');
RESET ROLE;

-- disallowed again
SELECT eventbus.disallow_relay('eb_team_a', 'team-a.*');
SELECT eventbus.disallow_relay('eb_team_a', 'team-a.*');
SET ROLE eb_team_a;
SELECT eventbus.outbox('team-a.mails', '{"x": 1}');
RESET ROLE;

REVOKE EXECUTE ON FUNCTION eventbus.outbox(text, jsonb, text, jsonb) FROM eb_team_a, eb_attacker, eb_team_a_member;
DROP ROLE eb_team_a_member;
SET ROLE eb_team_a;
SELECT eventbus.drop_topic('sec_relay_a');
RESET ROLE;
SET ROLE eb_attacker;
SELECT eventbus.drop_topic('sec_relay_evil');
RESET ROLE;
