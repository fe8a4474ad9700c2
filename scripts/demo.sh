#!/usr/bin/env bash
# make demo: builds and installs pg_eventbus, starts a throwaway server, runs
# demo/demo.sql, and removes the server again, also when a step fails.
set -euo pipefail
. "$(dirname "$0")/common.sh"

eb_build

WORK=$(eb_workdir demo)
cleanup() {
	eb_cluster_stop "$WORK"
	rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(eb_free_port)
eb_say "Starting a throwaway PostgreSQL $PG_MAJOR server (port $PORT, socket in $WORK)"
eb_cluster_start "$WORK" "$PORT"

cp "$EB_ROOT/demo/demo.sql" "$WORK/"
[ "$(id -u)" -eq 0 ] && chown "$EB_USER" "$WORK/demo.sql"
eb_say "Running demo/demo.sql"
as_user psql -X -e -h "$WORK" -p "$PORT" -U postgres -d postgres -f "$WORK/demo.sql"

eb_say "Demo finished; the server is being removed."
