-- The security suite: attacks and careless calls by roles with few rights.
-- This file creates the extension and the roles every later file uses:
--   eb_team_a, eb_team_b  may create topics (CREATE on eventbus_data)
--   eb_attacker           may create topics, and tries to get more
--   eb_nobody             has no grant at all
CREATE EXTENSION pg_eventbus;
CREATE ROLE eb_team_a;
CREATE ROLE eb_team_b;
CREATE ROLE eb_attacker;
CREATE ROLE eb_nobody;
GRANT CREATE ON SCHEMA eventbus_data TO eb_team_a, eb_team_b, eb_attacker;
-- the attacker may create functions of its own, as any role can in a
-- schema it owns
CREATE SCHEMA attacker AUTHORIZATION eb_attacker;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'eb\_%' ORDER BY 1;
