-- Storage: a negative retention means nothing and is refused.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('ret.neg', retention => '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM eventbus.topics WHERE topic = 'ret.neg';
SELECT eventbus.create_topic('ret.t', retention => '1 day');
SELECT eventbus.alter_topic('ret.t', retention => '-1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT eventbus.alter_topic('ret.t', retention => '1 month -40 days');
\echo :LAST_ERROR_SQLSTATE
SELECT retention FROM eventbus.topics WHERE topic = 'ret.t';
-- NULL leaves it unchanged, '0' removes the limit
SELECT eventbus.alter_topic('ret.t', retention => NULL);
SELECT retention FROM eventbus.topics WHERE topic = 'ret.t';
SELECT eventbus.alter_topic('ret.t', retention => '0');
SELECT retention FROM eventbus.topics WHERE topic = 'ret.t';
SELECT eventbus.create_topic('ret.zero', retention => '0');
SELECT retention FROM eventbus.topics WHERE topic = 'ret.zero';
SELECT eventbus.drop_topic('ret.t');
SELECT eventbus.drop_topic('ret.zero');
RESET ROLE;
