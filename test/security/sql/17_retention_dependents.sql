-- Storage: retention drops whole segments as the extension owner.  A view
-- over a segment, which any role can create without a grant, must not stop
-- it (the topic's disk use would grow without bound): objects depending on
-- a segment go with it, and the row types of segments cannot be used by
-- other roles at all.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('ret.t', 1, '1 hour');
SELECT * FROM eventbus.publish('ret.t', '{"n": 1}');
RESET ROLE;
SET ROLE eb_attacker;
CREATE VIEW attacker.ret_blocker AS SELECT * FROM eventbus_data."ret.t$1";
CREATE TABLE attacker.ret_rows (r eventbus_data."ret.t$1");
RESET ROLE;

-- segment 1 rotates out, then is past retention (test shortcut)
UPDATE eventbus.segment SET activated_at = now() - interval '2 hours'
WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'ret.t') AND segment = 1;
SET ROLE eb_team_a;
SELECT topic, action, segment FROM eventbus.run_maintenance() WHERE topic = 'ret.t';
RESET ROLE;
UPDATE eventbus.segment SET activated_at = now() - interval '2 hours'
WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'ret.t') AND segment = 2;
-- retention counts from sealing: segment 1 was sealed long ago (test shortcut)
UPDATE eventbus.segment SET sealed_at = now() - interval '2 hours'
WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'ret.t') AND segment = 1;
SET ROLE eb_team_a;
SELECT topic, action, segment FROM eventbus.run_maintenance() WHERE topic = 'ret.t';
RESET ROLE;
SELECT segment FROM eventbus.segment
WHERE topic_id = (SELECT topic_id FROM eventbus.topic WHERE topic = 'ret.t') ORDER BY 1;
SELECT to_regclass('attacker.ret_blocker') AS blocker_left;

SET ROLE eb_team_a;
SELECT eventbus.drop_topic('ret.t');
RESET ROLE;
