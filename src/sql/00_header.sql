-- pg_eventbus install script, assembled from src/sql/*.sql by the Makefile.

\echo Use "CREATE EXTENSION pg_eventbus" to load this file. \quit
