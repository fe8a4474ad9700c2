#!/usr/bin/env bash
# Schema benchmark (workload G): what validating events against a topic's
# JSON Schema costs publish.  One throwaway server (fsync and
# synchronous_commit on); the same 10-field event (bench/schema_publish.sql)
# published to a topic without a schema and to one with a typical schema
# (bench/schema_setup.sql: types, required properties, a pattern, an enum,
# a nested object), one event per transaction and in batches.
#
#   g1_plain    eventbus.publish, no schema, CLIENTS clients
#   g1_schema   eventbus.publish, with the schema
#   gb_plain    eventbus.publish_batch of BATCH events, no schema, BATCH_CLIENTS clients
#   gb_schema   eventbus.publish_batch, with the schema
#
# Each round runs the contenders of one size back to back (the order
# rotates); a contender's figure is its median over the rounds.  Prints
# events/s and the ratios (target >= 0.8), and writes them with the raw
# pgbench output to bench/results/<timestamp>-schema.txt.  See
# docs/benchmarks.md (workload G).
#
# Settings (environment):
#   EB_BENCH_SMOKE=1            a quick run: 3 s runs, 1 round, 1 s warm-up
#   EB_BENCH_SECONDS=20         seconds per pgbench run
#   EB_BENCH_ROUNDS=3           rounds
#   EB_BENCH_WARMUP=3           seconds of unrecorded warm-up per contender (0: none)
#   EB_BENCH_CLIENTS=8          clients, one event per transaction
#   EB_BENCH_BATCH_CLIENTS=4    clients, batches
#   EB_BENCH_BATCH_SIZE=100     events per publish_batch call
#   EB_BENCH_THREADS=           pgbench threads (default: CPUs, at most the clients)
#   EB_BENCH_STRICT=1           exit 1 when a target is missed
#   EB_BENCH_KEEP=1             keep the server's directory
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
. "$(dirname "$0")/common.sh"

BENCH_DIR="$EB_ROOT/bench"
if [ "${EB_BENCH_SMOKE:-0}" = 1 ]; then
	SECS=${EB_BENCH_SECONDS:-3}
	ROUNDS=${EB_BENCH_ROUNDS:-1}
	WARMUP=${EB_BENCH_WARMUP:-1}
else
	SECS=${EB_BENCH_SECONDS:-20}
	ROUNDS=${EB_BENCH_ROUNDS:-3}
	WARMUP=${EB_BENCH_WARMUP:-3}
fi
CLIENTS=${EB_BENCH_CLIENTS:-8}
BATCH_CLIENTS=${EB_BENCH_BATCH_CLIENTS:-4}
BATCH_SIZE=${EB_BENCH_BATCH_SIZE:-100}
NCPU=$(nproc)
for v in SECS ROUNDS CLIENTS BATCH_CLIENTS BATCH_SIZE; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
		echo "schema: $v must be a positive integer (got '${!v}')" >&2
		exit 2
	fi
done
[[ $WARMUP =~ ^[0-9]+$ ]] || { echo "schema: EB_BENCH_WARMUP must be an integer" >&2; exit 2; }

eb_build

WORK=$(eb_workdir schema-bench)
PORT=$(eb_free_port)
STAMP=${EB_BENCH_STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}
RESULTS_DIR="$BENCH_DIR/results"
RESULTS="$RESULTS_DIR/$STAMP-schema.txt"
mkdir -p "$RESULTS_DIR"
: >"$RESULTS"
trap 'eb_bench_remove_server schema' EXIT

eb_say "Starting a server (fsync on, synchronous_commit on)"
eb_cluster_start "$WORK" "$PORT" \
	"fsync = on" \
	"synchronous_commit = on" \
	"shared_buffers = '1GB'" \
	"max_wal_size = '16GB'" \
	"checkpoint_timeout = '1h'" \
	"max_connections = 50"
psql_q -f "$BENCH_DIR/schema_setup.sql" >/dev/null

declare -A LABEL NCLIENTS NEVENTS SCRIPT DEFS TPS MED_EV
add() { LABEL[$1]=$2 NCLIENTS[$1]=$3 NEVENTS[$1]=$4 SCRIPT[$1]=$5 DEFS[$1]=$6; }
add g1_plain "publish, no schema" "$CLIENTS" 1 "$BENCH_DIR/schema_publish.sql" "topic=sc_plain"
add g1_schema "publish, 10-field schema" "$CLIENTS" 1 "$BENCH_DIR/schema_publish.sql" "topic=sc_schema"
add gb_plain "publish_batch x $BATCH_SIZE, no schema" "$BATCH_CLIENTS" "$BATCH_SIZE" "$BENCH_DIR/schema_batch.sql" "topic=sc_plain"
add gb_schema "publish_batch x $BATCH_SIZE, 10-field schema" "$BATCH_CLIENTS" "$BATCH_SIZE" "$BENCH_DIR/schema_batch.sql" "topic=sc_schema"
CASES=("g1_plain g1_schema" "gb_plain gb_schema")

run() {
	local id=$1 secs=$2 out=$3 c=${NCLIENTS[$1]}
	psql_q -c "CHECKPOINT" >/dev/null
	if ! as_user pgbench -n -M prepared -T "$secs" -c "$c" -j "$(threads_for "$c")" \
		-D "${DEFS[$id]}" -D batch="$BATCH_SIZE" -f "${SCRIPT[$id]}" \
		-h "$WORK" -p "$PORT" -U postgres postgres >"$out" 2>&1; then
		cat "$out" >&2
		echo "schema: pgbench failed for $id" >&2
		return 1
	fi
	if grep -q '^number of failed transactions: [1-9]' "$out"; then
		cat "$out" >&2
		echo "schema: $id had failed transactions" >&2
		return 1
	fi
}

{
	echo "pg_eventbus schema benchmark $STAMP"
	echo "commit: $(git -C "$EB_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "machine: $NCPU CPUs; server: $(as_user postgres --version), fsync on, synchronous_commit on"
	echo "runs: ${SECS}s x $ROUNDS rounds per contender (warm-up ${WARMUP}s), pgbench -M prepared"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(other_servers)"
} | tee -a "$RESULTS"

if [ "$WARMUP" -gt 0 ]; then
	eb_say "Warm-up (${WARMUP}s per contender)"
	for g in "${CASES[@]}"; do
		for id in $g; do run "$id" "$WARMUP" "$WORK/warmup.out"; done
	done
fi
for ((r = 1; r <= ROUNDS; r++)); do
	eb_say "Round $r of $ROUNDS"
	for g in "${CASES[@]}"; do
		read -r -a ids <<<"$g"
		for ((j = 0; j < ${#ids[@]}; j++)); do
			id=${ids[$(((j + r - 1) % ${#ids[@]}))]}
			out="$WORK/$id.$r.out"
			run "$id" "$SECS" "$out"
			tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
			TPS[$id]+="$tps "
			printf '  %-40s %10.1f tx/s\n' "${LABEL[$id]}" "$tps" | tee -a "$RESULTS"
		done
	done
done

# every event of the schema topic carries the version header
psql_q -At -c "SELECT 'events with the version header: ' || count(*) FILTER (WHERE headers ? 'eventbus-schema-version') || ' of ' || count(*) FROM eventbus_data.sc_schema" | tee -a "$RESULTS"

say ""
say "G. schema validation (median of $ROUNDS rounds of ${SECS}s)"
say "$(printf '  %-40s %7s %12s %12s' contender clients 'tx/s' 'events/s')"
for g in "${CASES[@]}"; do
	for id in $g; do
		m=$(echo "${TPS[$id]}" | median)
		MED_EV[$id]=$(awk -v t="$m" -v e="${NEVENTS[$id]}" 'BEGIN {printf "%.1f", t * e}')
		say "$(printf '  %-40s %7d %12.0f %12.0f' "${LABEL[$id]}" "${NCLIENTS[$id]}" "$m" "${MED_EV[$id]}")"
	done
done
for id in "${!TPS[@]}"; do echo "${TPS[$id]}"; done | noise_note "see docs/benchmarks.md"

missed=0
say ""
say "Ratios (events/s, medians)"
for pair in "g1_schema g1_plain 1 event per transaction" "gb_schema gb_plain batches of $BATCH_SIZE"; do
	read -r num den name <<<"$pair"
	value=$(awk -v a="${MED_EV[$num]}" -v b="${MED_EV[$den]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
	if awk -v v="$value" 'BEGIN {exit !(v >= 0.8)}'; then verdict=MET; else verdict=MISSED; missed=$((missed + 1)); fi
	say "$(printf '  %-44s %6s   target >= 0.8   %s' "G  schema / no schema, $name" "$value" "$verdict")"
done

{
	echo ""
	echo "Raw pgbench output"
	for f in "$WORK"/*.[0-9]*.out; do
		[ -f "$f" ] || continue
		echo ""
		echo "--- $(basename "$f" .out)"
		cat "$f"
	done
} >>"$RESULTS"
say ""
say "results: ${RESULTS#"$EB_ROOT"/}"
if [ "$missed" -gt 0 ] && [ "${EB_BENCH_STRICT:-0}" = 1 ]; then
	exit 1
fi
exit 0
