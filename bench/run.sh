#!/usr/bin/env bash
# make bench: pg_eventbus side by side with its peers, in one run on one
# throwaway server, with the same small JSON event for everyone.
#
#   A  one event per transaction:  eventbus.publish, plain INSERT, PgQ
#   B  many events per statement:  eventbus.publish_batch, multi-row INSERT, PgQ
#   C  one partition against eight: eventbus.publish to 1 and to 8 partitions
#   D  consuming, batches of 100 and 1000, 1 and 4 consumers: eventbus.poll
#      (consumer group), PgQ batches, a queue table drained with SKIP LOCKED
#      (bench/consume.sh)
#   E  the Kafka relay against kcat, and its commit-to-acknowledgement
#      latency (bench/relay.sh, its own server and mock Kafka cluster)
#   F  wake-ups: publishing with and without subscribers, against NOTIFY in
#      every transaction, and commit-to-wake latency (bench/wakeups.sh)
#   G  publish with a 10-field JSON Schema against publish without, one
#      event per transaction and in batches (bench/schema.sh)
#   S  scale: topics, connections, rotations elsewhere, retries, groups,
#      listeners and shared memory as they grow (bench/scale.sh)
#
# Each round runs every contender of a workload back to back (the order
# rotates from round to round); a contender's figure is its median over the
# rounds.  A, B and C run for a fixed time; D, after them, drains a fixed
# set of events written beforehand.  Prints a table and the ratios with
# their targets, and writes it all to bench/results/<timestamp>.txt.  See
# docs/benchmarks.md.
#
# Settings (environment):
#   EB_BENCH_SECONDS=20        seconds per pgbench run (3 for a smoke run)
#   EB_BENCH_ROUNDS=3          rounds
#   EB_BENCH_WARMUP=3          seconds of unrecorded warm-up per contender (0: none)
#   EB_BENCH_CLIENTS=8         clients in A and C
#   EB_BENCH_BATCH_CLIENTS=4   clients in B
#   EB_BENCH_BATCH_SIZE=100    events per statement in B
#   EB_BENCH_THREADS=          pgbench threads (default: CPUs, at most the clients)
#   EB_BENCH_WORKLOADS="A B C D E F G S" workloads to run
#   EB_BENCH_CONSUME_EVENTS=300000  events each contender of D drains (a multiple
#                              of 4000; default 100000 when EB_BENCH_SECONDS < 10)
#   EB_BENCH_PROFILE=1         after the rounds, perf-record the server during
#                              A's publish and INSERT and D's poll (needs perf:
#                              linux-perf)
#   EB_BENCH_STRESS=1          afterwards, run test/t/030_stress.pl for 60 s
#   EB_BENCH_STRICT=1          exit 1 when a target is missed
#   EB_BENCH_KEEP=1            keep the server's directory
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
. "$(dirname "$0")/common.sh"

BENCH_DIR="$EB_ROOT/bench"
SECS=${EB_BENCH_SECONDS:-20}
ROUNDS=${EB_BENCH_ROUNDS:-3}
WARMUP=${EB_BENCH_WARMUP:-3}
CLIENTS=${EB_BENCH_CLIENTS:-8}
BATCH_CLIENTS=${EB_BENCH_BATCH_CLIENTS:-4}
BATCH_SIZE=${EB_BENCH_BATCH_SIZE:-100}
NCPU=$(nproc)
WORKLOADS=${EB_BENCH_WORKLOADS:-A B C D E F G S}
if [ "$SECS" -lt 10 ] 2>/dev/null; then
	CONSUME_EVENTS=${EB_BENCH_CONSUME_EVENTS:-100000}
else
	CONSUME_EVENTS=${EB_BENCH_CONSUME_EVENTS:-300000}
fi

for v in SECS ROUNDS CLIENTS BATCH_CLIENTS BATCH_SIZE CONSUME_EVENTS; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
		echo "bench: $v must be a positive integer (got '${!v}')" >&2
		exit 2
	fi
done
[[ $WARMUP =~ ^[0-9]+$ ]] || { echo "bench: EB_BENCH_WARMUP must be an integer" >&2; exit 2; }
if [ $((CONSUME_EVENTS % 4000)) -ne 0 ]; then
	# 4 partitions, each drained in whole batches of 1000
	echo "bench: EB_BENCH_CONSUME_EVENTS must be a multiple of 4000 (got $CONSUME_EVENTS)" >&2
	exit 2
fi
# A, B and C are timed pgbench runs; D (consuming) has its own driver; E
# (the Kafka relay) and F (wake-ups) are scripts of their own, with their
# own servers, run after the others.
TIMED_WORKLOADS=
RUN_D=0
RUN_E=0
RUN_F=0
RUN_G=0
RUN_S=0
for w in $WORKLOADS; do
	case $w in
	A | B | C) TIMED_WORKLOADS+="$w " ;;
	D) RUN_D=1 ;;
	E) RUN_E=1 ;;
	F) RUN_F=1 ;;
	G) RUN_G=1 ;;
	S) RUN_S=1 ;;
	*)
		echo "bench: unknown workload '$w' in EB_BENCH_WORKLOADS (A, B, C, D, E, F, G, S)" >&2
		exit 2
		;;
	esac
done

# pgbench threads for a given client count.

eb_build

WORK=$(eb_workdir bench)
PORT=$(eb_free_port)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR="$BENCH_DIR/results"
RESULTS="$RESULTS_DIR/$STAMP.txt"
mkdir -p "$RESULTS_DIR"
: >"$RESULTS"

BG_PID=
cleanup() {
	if [ -n "$BG_PID" ]; then kill "$BG_PID" 2>/dev/null || true; fi
	eb_bench_remove_server "bench"
}
trap cleanup EXIT

# Console and results file.


# The same settings for every contender: durable commits (fsync and
# synchronous_commit on, overriding eb_cluster_start's fsync = off), room
# in shared buffers for the whole run, and checkpoints only where this
# script asks for them (before each run).
eb_say "Starting a server (fsync on, synchronous_commit on)"
eb_cluster_start "$WORK" "$PORT" \
	"fsync = on" \
	"synchronous_commit = on" \
	"shared_buffers = '1GB'" \
	"max_wal_size = '16GB'" \
	"checkpoint_timeout = '1h'" \
	"max_connections = 50"

psql_q -f "$BENCH_DIR/setup.sql" >/dev/null

# Contenders: id, workload (see ORDER), label, clients, events per transaction, script,
# pgbench variable (-D).
declare -A C_LABEL C_CLIENTS C_EVENTS C_SCRIPT C_DEFS
add() {
	C_LABEL[$1]=$3 C_CLIENTS[$1]=$4 C_EVENTS[$1]=$5 C_SCRIPT[$1]=$6 C_DEFS[$1]=${7:-}
}
add a_publish A "eventbus.publish (8 partitions, keyed)" "$CLIENTS" 1 "$BENCH_DIR/publish.sql" topic=bench_a
add a_insert A "plain INSERT" "$CLIENTS" 1 "$BENCH_DIR/insert.sql"
add a_pgq A "PgQ insert_event" "$CLIENTS" 1 "$BENCH_DIR/pgq.sql"
add b_publish B "eventbus.publish_batch (8 partitions, keyed)" "$BATCH_CLIENTS" "$BATCH_SIZE" "$BENCH_DIR/batch_publish.sql" batch="$BATCH_SIZE"
add b_insert B "plain $BATCH_SIZE-row INSERT" "$BATCH_CLIENTS" "$BATCH_SIZE" "$BENCH_DIR/batch_insert.sql" batch="$BATCH_SIZE"
add b_pgq B "PgQ insert_event x $BATCH_SIZE" "$BATCH_CLIENTS" "$BATCH_SIZE" "$BENCH_DIR/batch_pgq.sql" batch="$BATCH_SIZE"
add c_1p C "eventbus.publish, 1 partition" "$CLIENTS" 1 "$BENCH_DIR/publish.sql" topic=bench_c1
add c_8p C "eventbus.publish, 8 partitions" "$CLIENTS" 1 "$BENCH_DIR/publish.sql" topic=bench_c8

declare -A ORDER=([A]="a_publish a_insert a_pgq" [B]="b_publish b_insert b_pgq" [C]="c_1p c_8p")
declare -A TITLE=(
	[A]="A. one event per transaction, $CLIENTS clients"
	[B]="B. $BATCH_SIZE events per statement, $BATCH_CLIENTS clients"
	[C]="C. $CLIENTS clients, 1 partition against 8"
)
declare -A TPS LAT MED_EV

# Workload D's contenders and driver.
# shellcheck source=bench/consume.sh
. "$BENCH_DIR/consume.sh"

# Other PostgreSQL servers on this machine (tests running alongside make
# the figures noisy).

# pgbench_run ID SECONDS OUTFILE: one pgbench run of a contender; prints
# its pgbench output to OUTFILE; fails if pgbench aborted or had failures.
pgbench_run() {
	local id=$1 secs=$2 out=$3 c=${C_CLIENTS[$1]} defs=()
	[ -n "${C_DEFS[$id]}" ] && defs=(-D "${C_DEFS[$id]}")
	psql_q -c "CHECKPOINT" >/dev/null
	if ! as_user pgbench -n -M prepared -T "$secs" -c "$c" -j "$(threads_for "$c")" \
		"${defs[@]}" -f "${C_SCRIPT[$id]}" \
		-h "$WORK" -p "$PORT" -U postgres postgres >"$out" 2>&1; then
		cat "$out" >&2
		echo "bench: pgbench failed for $id" >&2
		return 1
	fi
	if grep -q '^number of failed transactions: [1-9]' "$out"; then
		cat "$out" >&2
		echo "bench: $id had failed transactions" >&2
		return 1
	fi
}

{
	echo "pg_eventbus benchmark $STAMP"
	echo "commit: $(git -C "$EB_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		"($(git -C "$EB_ROOT" status --porcelain 2>/dev/null | wc -l) files changed or untracked)"
	echo "machine: $NCPU CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
		"$(awk '/MemTotal/ {printf "%.0f GB RAM", $2/1048576}' /proc/meminfo)"
	echo "server: $(as_user postgres --version), fsync on, synchronous_commit on, shared_buffers 1GB"
	echo "runs: ${SECS}s x $ROUNDS rounds per contender (warm-up ${WARMUP}s), pgbench -M prepared," \
		"workloads: $WORKLOADS"
	if [ "$RUN_D" = 1 ]; then
		echo "workload D: each contender drains $CONSUME_EVENTS events once per round (4-partition topic)"
	fi
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(other_servers)"
} | tee -a "$RESULTS"

if [ "$WARMUP" -gt 0 ] && [ -n "$TIMED_WORKLOADS" ]; then
	eb_say "Warm-up (${WARMUP}s per contender)"
	for w in $TIMED_WORKLOADS; do
		for id in ${ORDER[$w]}; do
			pgbench_run "$id" "$WARMUP" "$WORK/warmup.out"
		done
	done
fi

for ((r = 1; r <= ROUNDS && ${#TIMED_WORKLOADS} > 0; r++)); do
	eb_say "Round $r of $ROUNDS"
	for w in $TIMED_WORKLOADS; do
		# rotate the order so no contender always runs first
		read -r -a ids <<<"${ORDER[$w]}"
		n=${#ids[@]}
		for ((j = 0; j < n; j++)); do
			id=${ids[$(((j + r - 1) % n))]}
			out="$WORK/$id.$r.out"
			pgbench_run "$id" "$SECS" "$out"
			tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
			lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")
			TPS[$id]+="$tps "
			LAT[$id]+="$lat "
			printf '  %-2s %-46s %10.1f tx/s  %8.3f ms  (load %s)\n' "$w" "${C_LABEL[$id]}" "$tps" "$lat" \
				"$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$RESULTS"
		done
	done
done

# Workload D, after the others, so that its events (written just before
# it runs) do not change what A, B and C measure.
if [ "$RUN_D" = 1 ]; then
	consume_fill
	consume_warmup
	for ((r = 1; r <= ROUNDS; r++)); do
		eb_say "Workload D, round $r of $ROUNDS"
		consume_round "$r"
	done
fi


say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg), $(other_servers)"
if [ -n "$TIMED_WORKLOADS" ]; then
	say ""
	say "Results (median of $ROUNDS rounds of ${SECS}s; range in brackets)"
fi
for w in $TIMED_WORKLOADS; do
	say ""
	say "${TITLE[$w]}"
	say "$(printf '  %-46s %7s %12s %12s  %s' contender clients 'tx/s' 'events/s' 'range tx/s')"
	for id in ${ORDER[$w]}; do
		m=$(echo "${TPS[$id]}" | median)
		MED_EV[$id]=$(awk -v t="$m" -v e="${C_EVENTS[$id]}" 'BEGIN {printf "%.1f", t * e}')
		say "$(printf '  %-46s %7d %12.0f %12.0f  [%s]' "${C_LABEL[$id]}" "${C_CLIENTS[$id]}" "$m" \
			"${MED_EV[$id]}" "$(echo "${TPS[$id]}" | minmax)")"
	done
done

if [ "$RUN_D" = 1 ]; then
	consume_report
fi

# Spread over the rounds: above 10 % the ratios are not to be trusted.
for id in "${!TPS[@]}"; do echo "${TPS[$id]}"; done | noise_note "see docs/benchmarks.md"

# Storage per event, for reference.
say ""
say "Storage after the run (table and indexes, bytes per event)"
psql_q -At -F '|' <<-'EOF' | while IFS='|' read -r name events bytes; do
	SELECT 'eventbus ' || topic, events, size_bytes FROM eventbus.topics
	UNION ALL
	SELECT 'plain ' || t, (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM ' || t, false, true, '')))[1]::text::bigint,
	       pg_total_relation_size(t::regclass)
	FROM unnest(ARRAY['bench.plain_a', 'bench.plain_b']) t
	UNION ALL
	SELECT 'pgq ' || queue_name,
	       (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM ' || queue_data_pfx, false, true, '')))[1]::text::bigint,
	       (SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits
	        WHERE inhparent = queue_data_pfx::regclass)
	FROM pgq.queue
	ORDER BY 1;
EOF
	[ "${events:-0}" -gt 0 ] 2>/dev/null || continue
	printf '  %-22s %12s events %8.0f bytes/event\n' "$name" "$events" "$(awk -v b="$bytes" -v e="$events" 'BEGIN {print b / e}')"
done | tee -a "$RESULTS"

# Ratios: name, numerator, denominator, target (empty: for information).
missed=0
say ""
say "Ratios (events/s, medians)"
ratio() {
	local name=$1 num=$2 den=$3 target=$4 value verdict
	if [ -z "${MED_EV[$num]:-}" ] || [ -z "${MED_EV[$den]:-}" ]; then
		say "$(printf '  %-44s %6s   target >= %-5s %s' "$name" "-" "${target:--}" "not run")"
		return
	fi
	value=$(awk -v a="${MED_EV[$num]}" -v b="${MED_EV[$den]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
	if [ -z "$target" ]; then
		verdict=
	elif awk -v v="$value" -v t="$target" 'BEGIN {exit !(v >= t)}'; then
		verdict=MET
	else
		verdict=MISSED
		missed=$((missed + 1))
	fi
	# the same ratio within each round (its contenders ran back to back)
	rounds=$(awk -v a="${TPS[$num]}" -v b="${TPS[$den]}" -v ea="${C_EVENTS[$num]}" -v eb="${C_EVENTS[$den]}" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) printf "%s%.2f", (i > 1 ? " " : ""), (y[i] > 0 ? x[i] * ea / (y[i] * eb) : 0)
	}')
	if [ -z "$target" ]; then
		say "$(printf '  %-44s %6s   %-24s rounds: %s' "$name" "$value" "(no target)" "$rounds")"
	else
		say "$(printf '  %-44s %6s   target >= %-5s %-7s rounds: %s' "$name" "$value" "$target" "$verdict" "$rounds")"
	fi
}
ratio "A  publish / INSERT" a_publish a_insert 0.9
ratio "A  publish / PgQ" a_publish a_pgq 1.0
ratio "B  publish_batch / INSERT" b_publish b_insert 0.8
ratio "B  publish_batch / PgQ" b_publish b_pgq 1.0
ratio "C  1 partition / 8 partitions" c_1p c_8p 0.9
if [ "$RUN_D" = 1 ]; then
	consume_ratios
fi

# Raw pgbench output of every measured run.
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

# Where the time goes: perf on the server's processes during A's publish
# and INSERT and during one drain of D's poll with batches of 100 and of
# 1000, after the measured rounds so it does not disturb them.
profile_report() {
	local id=$1 pdata=$2 report
	if ! [ -s "$pdata" ]; then
		say "profile of $id: perf record failed (it needs root, or kernel.perf_event_paranoid <= 1)"
		return 0
	fi
	report="$RESULTS_DIR/$STAMP-perf-$id.txt"
	perf report -i "$pdata" --no-children --sort dso,symbol --stdio 2>/dev/null >"$report" || true
	say ""
	say "profile of $id: self time by object, then the top 25 functions"
	say "(call graphs: ${report#"$EB_ROOT"/})"
	{
		perf report -i "$pdata" --no-children -g none --sort dso --stdio 2>/dev/null |
			grep -E '^ +[0-9.]+%' | sed -n 1,8p
		echo
		perf report -i "$pdata" --no-children -g none --sort dso,symbol --stdio 2>/dev/null |
			grep -E '^ +[0-9.]+%' | sed 's/ *- *- *$//' | sed -n 1,25p
	} | tee -a "$RESULTS"
}
if [ "${EB_BENCH_PROFILE:-0}" = 1 ]; then
	if ! command -v perf >/dev/null; then
		say ""
		say "profile: perf is not installed (Debian package linux-perf); skipped"
	else
		postmaster=$(head -1 "$WORK/data/postmaster.pid")
		profile_ids=
		case " $TIMED_WORKLOADS " in *" A "*) profile_ids="a_publish a_insert" ;; esac
		for id in $profile_ids; do
			eb_say "Profiling $id"
			pdata="$WORK/perf.$id.data"
			pgbench_run "$id" "$SECS" "$WORK/profile.$id.out" &
			BG_PID=$!
			# wait for pgbench's clients, then record every server process
			for ((i = 0; i < 100; i++)); do
				[ "$(psql_q -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" \
					-ge "${C_CLIENTS[$id]}" ] && break
				sleep 0.1
			done
			pids=$(pgrep -d, -P "$postmaster")
			perf record -q -g -o "$pdata" -p "$pids" -- sleep $((SECS > 3 ? SECS - 2 : 1)) >/dev/null 2>&1 || true
			wait "$BG_PID" || true
			BG_PID=
			profile_report "$id" "$pdata"
		done
		if [ "$RUN_D" = 1 ]; then
			for id in d_poll_100_1 d_poll_1000_1; do
				eb_say "Profiling $id"
				# perf follows the backends the postmaster forks for pgbench
				pdata="$WORK/perf.$id.data"
				consume_run "$id" "$WORK/profile.$id.out" 1 "$pdata"
				profile_report "$id" "$pdata"
			done
		fi
	fi
fi

# E and F: their scripts print their own tables and ratios; they are copied
# into this run's results, and their misses counted with the others.
run_part() {
	local name=$1 script=$2 out
	out="$WORK/$name.out"
	say ""
	eb_say "$name ($script)"
	if ! EB_BENCH_STAMP=$STAMP EB_BENCH_STRICT=0 "$BENCH_DIR/$script" 2>&1 | tee "$out"; then
		echo "$script failed" | tee -a "$out"
		missed=$((missed + 1))
	fi
	cat "$out" >>"$RESULTS"
	missed=$((missed + $(grep -c 'MISSED' "$out" || true)))
}
if [ "$RUN_E" = 1 ] || [ "$RUN_F" = 1 ] || [ "$RUN_G" = 1 ] || [ "$RUN_S" = 1 ]; then
	eb_cluster_stop "$WORK"
	[ "$RUN_E" = 1 ] && run_part "Workload E: the Kafka relay" relay.sh
	[ "$RUN_F" = 1 ] && run_part "Workload F: wake-ups" wakeups.sh
	[ "$RUN_G" = 1 ] && run_part "Workload G: schemas" schema.sh
	[ "$RUN_S" = 1 ] && run_part "Workload S: scale" scale.sh
fi

status=0
if [ "${EB_BENCH_STRESS:-0}" = 1 ]; then
	say ""
	if [ -f "$EB_ROOT/test/t/030_stress.pl" ]; then
		eb_cluster_stop "$WORK"
		eb_say "Stress test (test/t/030_stress.pl, 60 s)"
		if (cd "$EB_ROOT" && EB_TAP_TESTS=test/t/030_stress.pl EB_STRESS_SECONDS=60 scripts/test.sh tap); then
			say "stress test: passed"
		else
			say "stress test: FAILED"
			status=1
		fi
	else
		say "stress test: test/t/030_stress.pl does not exist; skipped"
	fi
fi

say ""
say "results: ${RESULTS#"$EB_ROOT"/}"
if [ "$missed" -gt 0 ]; then
	say "$missed target(s) missed"
	[ "${EB_BENCH_STRICT:-0}" = 1 ] && status=1
fi
exit $status
