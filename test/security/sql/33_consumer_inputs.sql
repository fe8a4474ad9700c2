-- Consumers: input that means nothing is refused with 22023 and a message
-- naming what is accepted.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c33', 1);
-- an unknown start_at word
SELECT eventbus.create_group('g33', 'c33', 'earlist');
SELECT eventbus.create_group('g33', 'c33', 'next week');
SELECT eventbus.create_group('g33', 'c33', '2024-02-30 10:00');
SELECT eventbus.create_group('g33', 'c33', 'earliest');
SELECT eventbus.seek('g33', 'c33', 'newest');
-- a lease together with commit => true
SELECT * FROM eventbus.poll('g33', 'c33', 10, member => 'w', lease => '1 minute', commit => true);
-- wait() in REPEATABLE READ or SERIALIZABLE
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT eventbus.wait('g33', 'c33', '0');
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT eventbus.wait('g33', 'c33', '0');
ROLLBACK;
SELECT eventbus.wait('g33', 'c33', '0');
RESET ROLE;
