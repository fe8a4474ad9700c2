-- Issue 9, item 17: outbox() and relay_topic() in a database the relay does
-- not serve raise an error naming the cause instead of accepting what can
-- never reach Kafka.  This instance's eventbus.database is 'postgres'
-- (test/regress.conf), not this database.
SHOW eventbus.database;
SELECT current_database() = current_setting('eventbus.database') AS served;

SELECT eventbus.create_topic('sec_served');
SELECT eventbus.relay_topic('sec_served');
SELECT relay_to FROM eventbus.topic WHERE topic = 'sec_served';
SELECT eventbus.outbox('sec-served', '{"lost": "never"}');

-- nothing was counted as waiting for the relay
SELECT outbox_backlog FROM eventbus.relay_status;

-- stop_relay() needs no relay
SELECT eventbus.stop_relay('sec_served');
SELECT eventbus.drop_topic('sec_served');
