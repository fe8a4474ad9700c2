-- Consumers: commit() and nack() accept only what was handed out.  A
-- careless or hostile member cannot make its own group skip events
-- (commit past what it polled) or replay finished work (nack a committed
-- position); moving a group on purpose is seek().
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c30', 1);
SELECT eventbus.create_group('g30', 'c30', 'earliest');
SELECT count(*) FROM eventbus.publish_batch('c30', array_fill('{"n": 1}'::jsonb, ARRAY[10]));

-- without a poll in this transaction nothing can be committed
SELECT eventbus.commit('g30', 'c30', 0, 5);
-- beyond what this transaction's poll handed out
BEGIN;
SELECT count(*) FROM eventbus.poll('g30', 'c30', 3);
SELECT eventbus.commit('g30', 'c30', 0, 9);
ROLLBACK;
-- up to what was handed out: fine
BEGIN;
SELECT count(*) FROM eventbus.poll('g30', 'c30', 3);
SELECT eventbus.commit('g30', 'c30', 0, 2);
COMMIT;
-- what was handed out in an earlier transaction is not this one's
BEGIN;
SELECT count(*) FROM eventbus.poll('g30', 'c30', 2);
COMMIT;
SELECT eventbus.commit('g30', 'c30', 0, 4);
-- at or below the committed position: nothing to do, no error
SELECT eventbus.commit('g30', 'c30', 0, 1);
SELECT committed_position, pending_retries FROM eventbus.group_status('g30', 'c30');

-- nack: never delivered, or already committed, is refused
SELECT eventbus.nack('g30', 'c30', 0, 8);
BEGIN;
SELECT count(*) FROM eventbus.poll('g30', 'c30', 2);
SELECT eventbus.nack('g30', 'c30', 0, 1);
ROLLBACK;
BEGIN;
SELECT count(*) FROM eventbus.poll('g30', 'c30', 2);
SELECT eventbus.nack('g30', 'c30', 0, 7);
ROLLBACK;
-- a handed-out, uncommitted event can be given back; once committed, no more
BEGIN;
SELECT position FROM eventbus.poll('g30', 'c30', 2);
SELECT eventbus.nack('g30', 'c30', 0, 3, retry_after => '0');
SELECT eventbus.commit('g30', 'c30', 0, 4);
SAVEPOINT s;
SELECT eventbus.nack('g30', 'c30', 0, 4, retry_after => '0');
ROLLBACK TO s;
COMMIT;
SELECT committed_position, pending_retries FROM eventbus.group_status('g30', 'c30');
-- the retry comes back and, though below the committed position, may be
-- given back again
BEGIN;
SELECT position, attempt FROM eventbus.poll('g30', 'c30', 1);
SELECT eventbus.nack('g30', 'c30', 0, 3, retry_after => '0');
COMMIT;
-- then it is done, and nothing stays pending
BEGIN;
SELECT position, attempt FROM eventbus.poll('g30', 'c30', 1);
SELECT eventbus.commit('g30', 'c30', 0, 3);
COMMIT;
SELECT committed_position, pending_retries FROM eventbus.group_status('g30', 'c30');
-- a done retry cannot be given back
BEGIN;
SELECT position, attempt FROM eventbus.poll('g30', 'c30', 1);
SELECT eventbus.nack('g30', 'c30', 0, 3);
ROLLBACK;

-- with a lease: only what was handed to that member
SELECT eventbus.create_group('l30', 'c30', 'earliest');
SELECT count(*) FROM eventbus.poll('l30', 'c30', 3, member => 'w1', lease => '1 hour');
SELECT eventbus.commit('l30', 'c30', 0, 5, member => 'w1');
SELECT eventbus.nack('l30', 'c30', 0, 5, member => 'w1');
SELECT eventbus.commit('l30', 'c30', 0, 2, member => 'w1');
SELECT eventbus.nack('l30', 'c30', 0, 1, member => 'w1');
SELECT committed_position FROM eventbus.group_status('l30', 'c30');
-- moving ahead on purpose
SELECT eventbus.seek('g30', 'c30', 0, 9);
SELECT committed_position FROM eventbus.group_status('g30', 'c30');
RESET ROLE;
