-- pg_eventbus update from 0.1.0 to 0.2.0.
--
-- After this script the extension's objects equal those of a fresh 0.2.0
-- install (test/t/100_upgrade.pl compares the two with pg_dump).

\echo Use "ALTER EXTENSION pg_eventbus UPDATE TO '0.2.0'" to load this file. \quit
