#!/usr/bin/env bash
# consumer_lag cost: the view (lag from positions, one index probe per
# partition) against consumer_lag_exact() (counts every unconsumed event,
# the work the view did before 0.2.0), on the setup of issue 12: one group on
# a topic of 24 partitions with 75,000 events of lag each.
#
#   bench/lag.sh [PARTITIONS [LAG]]
#
# Starts a throwaway server (holding the machine-wide test lock), prints the
# median of 5 timings of each and their ratio, and stops it.
set -euo pipefail
PARTS=${1:-24}
LAG=${2:-75000}
PGBIN=$(pg_config --bindir)
DIR=$(mktemp -d /tmp/eb-lag.XXXXXX)
trap 'pg_ctl_stop; rm -rf "$DIR"' EXIT
as_user() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_ctl_stop() { as_user "$PGBIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true; }
[ "$(id -u)" -eq 0 ] && chown postgres "$DIR"
PORT=$((20000 + RANDOM % 10000))
exec 9>/tmp/pg_eventbus-test.lock
flock 9
# this tree's build, installed under the lock (as scripts/test.sh does)
make -s -C "$(dirname "$0")/.." install >/dev/null
as_user "$PGBIN/initdb" -D "$DIR/data" -U postgres >/dev/null
cat >>"$DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_eventbus'
port = $PORT
unix_socket_directories = '$DIR'
listen_addresses = ''
CONF
as_user "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
q() { as_user psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }
q -c "CREATE EXTENSION pg_eventbus" \
  -c "SELECT eventbus.create_topic('lag', $PARTS)" \
  -c "SELECT eventbus.create_group('g', 'lag', 'earliest')"
for ((p = 0; p < PARTS; p++)); do
	for ((done_ = 0; done_ < LAG; done_ += 5000)); do
		q -c "SELECT count(eventbus.publish('lag', jsonb_build_object('i', i), partition => $p)) FROM generate_series(1, 5000) i" >/dev/null
	done
done
q -c "VACUUM ANALYZE" >/dev/null
time_ms() {
	local sql=$1 i out=()
	for i in 1 2 3 4 5; do
		out+=("$(q -c '\timing on' -c "$sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')")
	done
	printf '%s\n' "${out[@]}" | sort -g | sed -n 3p
}
rows=$(q -c "SELECT count(*), sum(lag) FROM eventbus.consumer_lag")
view=$(time_ms "SELECT * FROM eventbus.consumer_lag")
exact=$(time_ms "SELECT * FROM eventbus.consumer_lag_exact('g', 'lag')")
echo "partitions $PARTS, lag per partition $LAG: rows|total lag = $rows"
echo "consumer_lag (positions):        $view ms (median of 5)"
echo "consumer_lag_exact() (counting): $exact ms (median of 5)"
awk -v a="$exact" -v b="$view" 'BEGIN { printf "ratio exact/positions: %.0fx\n", a / b }'
