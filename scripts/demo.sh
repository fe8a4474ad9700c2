#!/usr/bin/env bash
# make demo: builds and installs pg_eventbus, starts a throwaway server, runs
# demo/demo.sql, and removes the server again, also when a step fails.
set -euo pipefail
. "$(dirname "$0")/common.sh"

eb_build

WORK=$(eb_workdir demo)
KAFKA_PID=
cleanup() {
	eb_cluster_stop "$WORK"
	[ -n "$KAFKA_PID" ] && kill "$KAFKA_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

eb_say "Starting a mock Kafka cluster (librdkafka's, on loopback)"
"$EB_ROOT/test/mock_kafka" --topic orders:3 --no-stdin >"$WORK/kafka.out" 2>&1 &
KAFKA_PID=$!
for _ in $(seq 1 50); do
	grep -q '^BOOTSTRAP=' "$WORK/kafka.out" && break
	sleep 0.1
done
BOOTSTRAP=$(sed -n 's/^BOOTSTRAP=//p' "$WORK/kafka.out")
[ -n "$BOOTSTRAP" ] || { cat "$WORK/kafka.out"; exit 1; }
echo "Kafka bootstrap servers: $BOOTSTRAP"

PORT=$(eb_free_port)
eb_say "Starting a throwaway PostgreSQL $PG_MAJOR server (port $PORT, socket in $WORK)"
eb_cluster_start "$WORK" "$PORT" \
	"eventbus.database = 'postgres'" \
	"eventbus.kafka_brokers = '$BOOTSTRAP'"

cp "$EB_ROOT/demo/demo.sql" "$WORK/"
[ "$(id -u)" -eq 0 ] && chown "$EB_USER" "$WORK/demo.sql"
eb_say "Running demo/demo.sql"
as_user psql -X -e -h "$WORK" -p "$PORT" -U postgres -d postgres -f "$WORK/demo.sql"

eb_say "The same events, read back from Kafka with kcat: same partitions and keys, in commit order (48 committed before 47)"
kcat -C -b "$BOOTSTRAP" -t orders -o beginning -e -q \
	-f '%p %o  key %k  %s  headers: %h\n' 2>/dev/null |
	sed 's/eventbus-event-id=[^,]*,//; s/,eventbus-lsn=.*//' | sort -k1,1n -k2,2n |
	sed 's/^\([0-9]*\) \([0-9]*\) /partition \1 offset \2 /'

eb_say "Demo finished; the server and the mock Kafka cluster are being removed."
