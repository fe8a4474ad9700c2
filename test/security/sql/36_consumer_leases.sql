-- Consumers: leases are measured in clock time, and fencing compares the
-- lease generation, not only the member name: a member whose partition
-- was taken over cannot commit what it was handed before, even once it
-- holds the partition again.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('c36', 1);
SELECT eventbus.create_group('g36', 'c36', 'earliest');
SELECT count(*) FROM eventbus.publish_batch('c36', array_fill('{"n": 1}'::jsonb, ARRAY[5]));

-- A takes the partition (generation 1), its lease runs out
SELECT position, generation FROM eventbus.poll('g36', 'c36', 2, member => 'A', lease => '0.2 seconds');
SELECT pg_sleep(0.3);
-- B takes it over (generation 2) and gets the same events again
SELECT position, generation FROM eventbus.poll('g36', 'c36', 2, member => 'B', lease => '0.2 seconds');
SELECT pg_sleep(0.3);
-- A takes it back (generation 3)
SELECT position, generation FROM eventbus.poll('g36', 'c36', 1, member => 'A', lease => '1 hour');
-- what A was handed in generation 1 is fenced, though A holds the partition
SELECT eventbus.commit('g36', 'c36', 0, 0, member => 'A', generation => 1);
SELECT eventbus.nack('g36', 'c36', 0, 0, member => 'A', generation => 1);
-- B is not the holder any more
SELECT eventbus.commit('g36', 'c36', 0, 0, member => 'B');
-- A in generation 3: by default the generation this session was handed
SELECT eventbus.commit('g36', 'c36', 0, 0, member => 'A');
SELECT eventbus.commit('g36', 'c36', 0, 0, member => 'A', generation => 3);
SELECT committed_position, member FROM eventbus.group_status('g36', 'c36');
SELECT eventbus.release('g36', 'c36', 'A');

-- clock time: a lease taken late in a long transaction lasts its full
-- length after the poll, not from the start of the transaction
BEGIN;
SELECT pg_sleep(2.2);
SELECT count(*) FROM eventbus.poll('g36', 'c36', 1, member => 'C', lease => '2 seconds');
COMMIT;
SELECT member, lease_until > clock_timestamp() AS active FROM eventbus.group_status('g36', 'c36');
RESET ROLE;
