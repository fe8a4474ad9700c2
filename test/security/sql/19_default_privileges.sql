-- Storage: a careless superuser (the extension owner) has default
-- privileges that grant every new table to an application role, as many
-- installations do.  They must not reach the tables of topics: the role
-- could rewrite events through the parent table or insert rows into a
-- segment behind publish().  A topic's privileges are only what its owner
-- grants.
ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO eb_nobody;
ALTER DEFAULT PRIVILEGES IN SCHEMA eventbus_data GRANT SELECT, UPDATE ON TABLES TO PUBLIC;
SET ROLE eb_team_a;
SELECT eventbus.create_topic('dp.t');
SELECT * FROM eventbus.publish('dp.t', '{"n": 1}');
RESET ROLE;
SET ROLE eb_nobody;
INSERT INTO eventbus_data."dp.t$1" (partition, position, event_id, created_at, value)
VALUES (0, 7, '00000000-0000-7000-8000-000000000000', '2026-01-01 00:00:00+00', '{}');
UPDATE eventbus_data."dp.t" SET value = '{"forged": true}';
DELETE FROM eventbus_data."dp.t";
SELECT position, value FROM eventbus_data."dp.t";
SELECT * FROM eventbus.publish('dp.t', '{"n": 2}');
RESET ROLE;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM eb_nobody;
ALTER DEFAULT PRIVILEGES IN SCHEMA eventbus_data REVOKE SELECT, UPDATE ON TABLES FROM PUBLIC;

-- only the topic's owner holds privileges on its tables
SELECT c.relname,
       coalesce(string_agg(CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
                           || '=' || a.privilege_type
                           || CASE WHEN a.is_grantable THEN '*' ELSE '' END,
                           ', ' ORDER BY a.grantee::regrole::text, a.privilege_type), '') AS grants
FROM pg_class c LEFT JOIN LATERAL aclexplode(c.relacl) a ON a.grantee <> c.relowner
WHERE c.relnamespace = 'eventbus_data'::regnamespace AND c.relname LIKE 'dp.t%'
  AND c.relkind = 'r'
GROUP BY c.relname
ORDER BY 1;
SELECT position, value FROM eventbus_data."dp.t";
SET ROLE eb_team_a;
SELECT eventbus.drop_topic('dp.t');
RESET ROLE;
