#!/usr/bin/env bash
# Wake-ups benchmark: what LISTEN subscribers and eventbus.wait() cost the
# producers, and how soon they wake after a commit, against the naive
# baseline of a NOTIFY in every producer transaction.  One throwaway server
# (fsync and synchronous_commit on, pg_eventbus preloaded, its worker
# sending the notifications in the "postgres" database).
#
# Throughput: pgbench, 8 clients, one event per transaction, for a fixed time
#   tp_publish         eventbus.publish (bench/publish.sql), no subscribers
#   tp_publish_listen  the same, with 6 sessions LISTENing on
#                      "eventbus.wake_tp" that only read the notifications
#   tp_publish_subs    the same, with 4 LISTEN subscribers that poll after
#                      every wake-up and 2 sessions looping on eventbus.wait()
#                      then poll (one consumer group each)
#   tp_publish_timer   for comparison, 6 sessions that poll their group every
#                      eventbus.notify_interval, without LISTEN or wait()
#   tp_insert          the naive producer without its NOTIFY: a plain INSERT
#                      (bench/wakeups_insert.sql), no subscribers
#   tp_notify          the naive baseline: the same INSERT and a NOTIFY in
#                      every transaction (bench/wakeups_notify.sql), with 6
#                      LISTEN subscribers that read the table after every
#                      wake-up
# Each round runs all of them back to back (the order rotates); a
# contender's figure is the median of its rounds.
#
# Latency: producers commit one event per transaction at a steady rate
# (EB_BENCH_WAKE_RATE, default 200 transactions/s, from 4 connections);
# bench/wakeups_driver.py matches every commit with the moment a subscriber
# is woken: a LISTEN "eventbus.wake_lat" subscriber and an eventbus.wait()
# loop (both polling after the wake-up), and, in runs of their own, a
# LISTEN subscriber of the naive NOTIFY-per-transaction producer.
# p50/p99 pooled over the rounds.  See docs/benchmarks.md (workload F).
#
# Prints a table and the ratios and targets, and writes them with the raw
# output to bench/results/<timestamp>-wakeups.txt.
#
# Settings (environment):
#   EB_BENCH_SMOKE=1            a quick run: 3 s runs, 1 round, 1 s warm-up
#   EB_BENCH_SECONDS=20         seconds per pgbench run
#   EB_BENCH_ROUNDS=3           rounds (throughput and latency)
#   EB_BENCH_WARMUP=3           seconds of unrecorded warm-up per throughput contender (0: none)
#   EB_BENCH_CLIENTS=8          pgbench clients
#   EB_BENCH_THREADS=           pgbench threads (default: CPUs, at most the clients)
#   EB_BENCH_WAKE_LISTENERS=4   LISTEN subscribers in tp_publish_subs
#   EB_BENCH_WAKE_WAITERS=2     wait() subscribers in tp_publish_subs (the other
#                               contenders with subscribers get LISTENERS +
#                               WAITERS sessions)
#   EB_BENCH_WAKE_RATE=200      transactions per second in the latency runs
#   EB_BENCH_WAKE_PRODUCERS=4   producer connections in the latency runs
#   EB_BENCH_WAKE_SECONDS=      seconds per latency run (default: EB_BENCH_SECONDS)
#   EB_BENCH_WAKE_SUB_SYNC=off  synchronous_commit of the latency runs' subscribers
#                               (their polls; on: a wake-up can wait for the
#                               subscriber's own WAL flush)
#   EB_BENCH_WAKE_TARGET_MS=20  p99 target for LISTEN and wait()
#   EB_BENCH_NOTIFY_INTERVAL=10ms  eventbus.notify_interval of the server
#   EB_BENCH_WAKE_PHASES="throughput latency"  what to run
#   EB_BENCH_STRICT=1           exit 1 when a target is missed
#   EB_BENCH_KEEP=1             keep the server's directory
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
. "$(dirname "$0")/common.sh"

BENCH_DIR="$EB_ROOT/bench"
DRIVER="$BENCH_DIR/wakeups_driver.py"
PYTHON=${EB_PYTHON:-/usr/bin/python3}
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
LISTENERS=${EB_BENCH_WAKE_LISTENERS:-4}
WAITERS=${EB_BENCH_WAKE_WAITERS:-2}
RATE=${EB_BENCH_WAKE_RATE:-200}
PRODUCERS=${EB_BENCH_WAKE_PRODUCERS:-4}
LAT_SECS=${EB_BENCH_WAKE_SECONDS:-$SECS}
TARGET_MS=${EB_BENCH_WAKE_TARGET_MS:-20}
SUB_SYNC=${EB_BENCH_WAKE_SUB_SYNC:-off}
PHASES=${EB_BENCH_WAKE_PHASES:-throughput latency}
NCPU=$(nproc)

for v in SECS ROUNDS CLIENTS RATE PRODUCERS LAT_SECS; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
		echo "wakeups: $v must be a positive integer (got '${!v}')" >&2
		exit 2
	fi
done
for v in WARMUP LISTENERS WAITERS; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "wakeups: $v must be an integer (got '${!v}')" >&2; exit 2; }
done
[[ $SUB_SYNC =~ ^(on|off)$ ]] || { echo "wakeups: EB_BENCH_WAKE_SUB_SYNC must be on or off" >&2; exit 2; }
[[ $TARGET_MS =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "wakeups: EB_BENCH_WAKE_TARGET_MS must be a number" >&2; exit 2; }
[ $((LISTENERS + WAITERS)) -gt 0 ] || { echo "wakeups: no subscribers (EB_BENCH_WAKE_LISTENERS, _WAITERS)" >&2; exit 2; }
RUN_TP=0 RUN_LAT=0
for p in $PHASES; do
	case $p in
	throughput) RUN_TP=1 ;;
	latency) RUN_LAT=1 ;;
	*) echo "wakeups: unknown phase '$p' in EB_BENCH_WAKE_PHASES (throughput, latency)" >&2; exit 2 ;;
	esac
done
if ! "$PYTHON" -c 'import psycopg' 2>/dev/null; then
	echo "wakeups: $PYTHON cannot import psycopg: install python3-psycopg (make deps)" >&2
	exit 2
fi


eb_build

WORK=$(eb_workdir wakeups)
PORT=$(eb_free_port)
DSN="host=$WORK port=$PORT user=postgres dbname=postgres"
STAMP=${EB_BENCH_STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}
RESULTS_DIR="$BENCH_DIR/results"
RESULTS="$RESULTS_DIR/$STAMP-wakeups.txt"
mkdir -p "$RESULTS_DIR"
: >"$RESULTS"

SUB_PID=
STOP_FILE=
cleanup() {
	# subscribers stop when their stop file appears
	if [ -n "$SUB_PID" ]; then
		[ -n "$STOP_FILE" ] && as_user touch "$STOP_FILE" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$SUB_PID" 2>/dev/null || break; sleep 0.1; done
		kill "$SUB_PID" 2>/dev/null || true
	fi
	eb_bench_remove_server "wakeups"
}
trap cleanup EXIT



driver() {
	as_user "$PYTHON" "$DRIVER" "$@"
}

eb_say "Starting a server (fsync on, synchronous_commit on)"
eb_cluster_start "$WORK" "$PORT" \
	"fsync = on" \
	"synchronous_commit = on" \
	"shared_buffers = '1GB'" \
	"max_wal_size = '16GB'" \
	"checkpoint_timeout = '1h'" \
	"max_connections = 50" \
	"eventbus.database = 'postgres'" \
	"eventbus.notify_interval = '${EB_BENCH_NOTIFY_INTERVAL:-10ms}'"

psql_q -f "$BENCH_DIR/wakeups_setup.sql" >/dev/null

# The database worker sends the notifications: wait until it runs.
WORKER_PID=
for ((i = 0; i < 100; i++)); do
	WORKER_PID=$(psql_q -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_eventbus worker'")
	[ -n "$WORKER_PID" ] && break
	sleep 0.1
done
if [ -z "$WORKER_PID" ]; then
	echo "wakeups: the pg_eventbus worker did not start" >&2
	exit 1
fi
NOTIFY_INTERVAL=$(psql_q -At -c "SHOW eventbus.notify_interval")
NOTIFY_MS=$(psql_q -At -c "SELECT setting FROM pg_settings WHERE name = 'eventbus.notify_interval'")
NSUBS=$((LISTENERS + WAITERS))


{
	echo "pg_eventbus wake-ups benchmark $STAMP"
	echo "commit: $(git -C "$EB_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		"($(git -C "$EB_ROOT" status --porcelain 2>/dev/null | wc -l) files changed or untracked)"
	echo "machine: $NCPU CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
		"$(awk '/MemTotal/ {printf "%.0f GB RAM", $2/1048576}' /proc/meminfo)"
	echo "server: $(as_user postgres --version), fsync on, synchronous_commit on," \
		"eventbus.notify_interval $NOTIFY_INTERVAL"
	[ "$RUN_TP" = 1 ] && echo "throughput: ${SECS}s x $ROUNDS rounds per contender (warm-up ${WARMUP}s)," \
		"pgbench -M prepared, $CLIENTS clients"
	[ "$RUN_LAT" = 1 ] && echo "latency: ${LAT_SECS}s x $ROUNDS rounds per kind, $RATE transactions/s" \
		"from $PRODUCERS connections, one event per transaction;" \
		"subscribers' polls with synchronous_commit $SUB_SYNC"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(other_servers)"
} | tee -a "$RESULTS"

# The pg_eventbus worker's CPU time (ms) and voluntary context switches
# (how often it slept and was woken), from /proc.
worker_counters() {
	local ticks sw
	ticks=$(awk '{print $14 + $15}' "/proc/$WORKER_PID/stat" 2>/dev/null || echo 0)
	sw=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$WORKER_PID/status" 2>/dev/null || echo 0)
	echo "$((ticks * 1000 / $(getconf CLK_TCK))) $sw"
}

# CPU time (ms) of the given processes, from /proc.
cpu_ms() {
	local ticks=0 pid t
	for pid in "$@"; do
		t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
		ticks=$((ticks + t))
	done
	echo $((ticks * 1000 / $(getconf CLK_TCK)))
}

# The machine's CPU counters (/proc/stat: busy and total jiffies).
cpu_counters() {
	awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}

# Throughput contenders: label, script, pgbench -D, subscribers (none, or
# the --kind of wakeups_driver.py subscribers).
declare -A C_LABEL C_SCRIPT C_DEFS C_SUBS
add() { C_LABEL[$1]=$2 C_SCRIPT[$1]=$3 C_DEFS[$1]=$4 C_SUBS[$1]=$5; }
PUB="$BENCH_DIR/publish.sql"
add tp_publish "publish, no subscribers" "$PUB" topic=wake_tp none
add tp_publish_listen "publish, $NSUBS LISTEN, no poll" "$PUB" topic=wake_tp notify-only
add tp_publish_subs "publish, $LISTENERS LISTEN + $WAITERS wait(), poll after wake" "$PUB" topic=wake_tp eventbus
add tp_publish_timer "publish, $NSUBS pollers every $NOTIFY_INTERVAL, no wake" "$PUB" topic=wake_tp timer
add tp_insert "naive: INSERT, no NOTIFY, no subscribers" "$BENCH_DIR/wakeups_insert.sql" "" none
add tp_notify "naive: INSERT + NOTIFY, $NSUBS LISTEN, read after" "$BENCH_DIR/wakeups_notify.sql" "" naive
TP_ORDER="tp_publish tp_publish_listen tp_publish_subs tp_publish_timer tp_insert tp_notify"
declare -A TPS SUBINFO

# subs_start KIND TAG: subscribers in the background, connected and
# listening when this returns.
subs_start() {
	local kind=$1 tag=$2 ready
	ready="$WORK/subs.$tag.ready"
	STOP_FILE="$WORK/subs.$tag.stop"
	rm -f "$ready" "$STOP_FILE"
	driver subscribers --dsn "$DSN" --kind "$kind" --topic wake_tp \
		--listeners "$LISTENERS" --waiters "$WAITERS" --period "$(awk -v m="$NOTIFY_MS" 'BEGIN {print m / 1000}')" \
		--ready "$ready" --stop "$STOP_FILE" --stats "$WORK/subs.$tag.json" \
		--max-seconds $((SECS * 3 + 120)) >"$WORK/subs.$tag.out" 2>&1 &
	SUB_PID=$!
	for ((i = 0; i < 300; i++)); do
		[ -f "$ready" ] && return 0
		if ! kill -0 "$SUB_PID" 2>/dev/null; then break; fi
		sleep 0.1
	done
	cat "$WORK/subs.$tag.out" >&2
	echo "wakeups: the subscribers did not start" >&2
	return 1
}

# subs_stop TAG: lets the subscribers catch up for a second, stops them.
subs_stop() {
	local tag=$1 rc=0
	sleep 1
	as_user touch "$STOP_FILE"
	wait "$SUB_PID" || rc=$?
	SUB_PID=
	if [ "$rc" -ne 0 ]; then
		cat "$WORK/subs.$tag.out" >&2
		echo "wakeups: the subscribers failed" >&2
		return 1
	fi
}

# tp_run ID SECONDS OUTFILE: one pgbench run, with the contender's
# subscribers running around it.
tp_run() {
	local id=$1 secs=$2 out=$3 tag defs=() before after
	tag=$(basename "$out" .out)
	[ -n "${C_DEFS[$id]}" ] && defs=(-D "${C_DEFS[$id]}")
	if [ "${C_SUBS[$id]}" != none ]; then
		subs_start "${C_SUBS[$id]}" "$tag"
	fi
	psql_q -c "CHECKPOINT" >/dev/null
	# the subscribers' server backends and their client process
	local sub_backends=() sub_clients=() sb_before=0 sc_before=0
	if [ "${C_SUBS[$id]}" != none ]; then
		read -r -a sub_backends <<<"$(psql_q -At -c \
			"SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE application_name = 'wakeups_driver'")"
		read -r -a sub_clients <"$WORK/subs.$tag.ready"   # the driver's pid
		sb_before=$(cpu_ms "${sub_backends[@]}")
		sc_before=$(cpu_ms "${sub_clients[@]}")
	fi
	before=$(worker_counters)
	cpu_before=$(cpu_counters)
	if ! as_user pgbench -n -M prepared -T "$secs" -c "$CLIENTS" -j "$(threads_for "$CLIENTS")" \
		"${defs[@]}" -f "${C_SCRIPT[$id]}" \
		-h "$WORK" -p "$PORT" -U postgres postgres >"$out" 2>&1; then
		cat "$out" >&2
		echo "wakeups: pgbench failed for $id" >&2
		return 1
	fi
	after=$(worker_counters)
	cpu_after=$(cpu_counters)
	SUB_CPU=
	if [ "${C_SUBS[$id]}" != none ]; then
		SUB_CPU="CPU during the run: their backends $(($(cpu_ms "${sub_backends[@]}") - sb_before)) ms,"
		SUB_CPU+=" the Python client $(($(cpu_ms "${sub_clients[@]}") - sc_before)) ms"
	fi
	if grep -q '^number of failed transactions: [1-9]' "$out"; then
		cat "$out" >&2
		echo "wakeups: $id had failed transactions" >&2
		return 1
	fi
	# pg_eventbus worker: CPU ms and wake-ups during the run
	read -r b_ms b_sw <<<"$before"
	read -r a_ms a_sw <<<"$after"
	WORKER_INFO="worker $((a_ms - b_ms)) ms CPU, $((a_sw - b_sw)) wake-ups"
	read -r b_busy b_tot <<<"$cpu_before"
	read -r a_busy a_tot <<<"$cpu_after"
	CPU_BUSY=$(((a_busy - b_busy) * 100 / (a_tot - b_tot > 0 ? a_tot - b_tot : 1)))
	SUB_LINE=
	if [ "${C_SUBS[$id]}" != none ]; then
		subs_stop "$tag"
		SUB_LINE=$(tail -1 "$WORK/subs.$tag.out")
	fi
}


missed=0
declare -A MED

if [ "$RUN_TP" = 1 ]; then
	if [ "$WARMUP" -gt 0 ]; then
		eb_say "Warm-up (${WARMUP}s per contender)"
		for id in $TP_ORDER; do
			tp_run "$id" "$WARMUP" "$WORK/warmup.$id.out"
		done
	fi
	read -r -a ids <<<"$TP_ORDER"
	n=${#ids[@]}
	for ((r = 1; r <= ROUNDS; r++)); do
		eb_say "Throughput, round $r of $ROUNDS"
		for ((j = 0; j < n; j++)); do
			id=${ids[$(((j + r - 1) % n))]}
			out="$WORK/$id.$r.out"
			tp_run "$id" "$SECS" "$out"
			tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
			lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")
			txs=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
			TPS[$id]+="$tps "
			printf '  %-50s %7.1f tx/s %7.3f ms  (CPUs %s%% busy; %s)\n' "${C_LABEL[$id]}" "$tps" "$lat" \
				"$CPU_BUSY" "$WORKER_INFO" | tee -a "$RESULTS"
			if [ -n "$SUB_LINE" ]; then
				SUBINFO[$id]+="round $r ($txs events published): $SUB_LINE"$'\n'
				printf '  %-4s %s\n' "" "$SUB_LINE" "" "$SUB_CPU" | tee -a "$RESULTS"
			fi
		done
	done

	say ""
	say "load average after the throughput runs: $(cut -d' ' -f1-3 /proc/loadavg), $(other_servers)"
	say ""
	say "Producer throughput, $CLIENTS clients, one event per transaction (median of $ROUNDS rounds of ${SECS}s; range in brackets)"
	say "$(printf '  %-50s %8s  %s' contender 'tx/s' 'range tx/s')"
	for id in $TP_ORDER; do
		MED[$id]=$(echo "${TPS[$id]}" | median)
		say "$(printf '  %-50s %8.0f  [%s]' "${C_LABEL[$id]}" "${MED[$id]}" "$(echo "${TPS[$id]}" | minmax)")"
	done

	for id in $TP_ORDER; do echo "${TPS[$id]}"; done | noise_note

	say ""
	say "Ratios (tx/s, medians)"
	ratio() {
		local name=$1 num=$2 den=$3 target=$4 value verdict rounds
		value=$(awk -v a="${MED[$num]}" -v b="${MED[$den]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
		rounds=$(awk -v a="${TPS[$num]}" -v b="${TPS[$den]}" 'BEGIN {
			n = split(a, x, " "); split(b, y, " ")
			for (i = 1; i <= n; i++) printf "%s%.2f", (i > 1 ? " " : ""), (y[i] > 0 ? x[i] / y[i] : 0)
		}')
		if [ -z "$target" ]; then
			say "$(printf '  %-44s %6s   %-24s rounds: %s' "$name" "$value" "(no target)" "$rounds")"
			return
		fi
		if awk -v v="$value" -v t="$target" 'BEGIN {exit !(v >= t)}'; then
			verdict=MET
		else
			verdict=MISSED
			missed=$((missed + 1))
		fi
		say "$(printf '  %-44s %6s   target >= %-5s %-7s rounds: %s' "$name" "$value" "$target" "$verdict" "$rounds")"
	}
	ratio "publish: LISTEN, no poll / no subscribers" tp_publish_listen tp_publish 0.95
	# consuming subscribers compete with the producers for CPU and WAL flushes:
	# no target, compared with subscribers that poll on a timer instead
	ratio "publish: poll after wake / no subscribers" tp_publish_subs tp_publish ""
	ratio "publish: poll after wake / poll on a timer" tp_publish_subs tp_publish_timer ""
	ratio "naive INSERT + NOTIFY / publish" tp_notify tp_publish ""
	ratio "naive INSERT + NOTIFY / INSERT, no NOTIFY" tp_notify tp_insert ""
	ratio "publish / INSERT (no subscribers)" tp_publish tp_insert ""
fi

if [ "$RUN_LAT" = 1 ]; then
	LAT_RUNS=()
	kinds=(eventbus naive)
	for ((r = 1; r <= ROUNDS; r++)); do
		eb_say "Latency at $RATE transactions/s, round $r of $ROUNDS"
		for ((j = 0; j < 2; j++)); do
			kind=${kinds[$(((j + r - 1) % 2))]}
			prefix="$WORK/lat.$kind.$r"
			psql_q -c "CHECKPOINT" >/dev/null
			if ! driver latency --dsn "$DSN" --kind "$kind" --rate "$RATE" --seconds "$LAT_SECS" \
				--producers "$PRODUCERS" --sub-sync "$SUB_SYNC" --out "$prefix" >"$prefix.out" 2>&1; then
				cat "$prefix.out" >&2
				echo "wakeups: latency run $kind failed" >&2
				exit 1
			fi
			sed 's/^/  /' "$prefix.out" | tee -a "$RESULTS"
			LAT_RUNS+=("$prefix")
		done
	done
	say ""
	say "Commit-to-wake latency at $RATE transactions/s (all rounds pooled; ms after COMMIT returned to the producer)"
	driver report --target-ms "$TARGET_MS" --missed-file "$WORK/lat.missed" "${LAT_RUNS[@]}" | tee -a "$RESULTS"
	missed=$((missed + $(cat "$WORK/lat.missed")))
fi

# Raw output of every measured run.
{
	echo ""
	echo "Raw output"
	for f in "$WORK"/tp_*.out "$WORK"/lat.*.summary.json; do
		[ -f "$f" ] || continue
		echo ""
		echo "--- $(basename "$f")"
		cat "$f"
	done
	for id in "${!SUBINFO[@]}"; do
		echo ""
		echo "--- subscribers of $id"
		printf '%s' "${SUBINFO[$id]}"
	done
} >>"$RESULTS"

say ""
say "results: ${RESULTS#"$EB_ROOT"/}"
status=0
if [ "$missed" -gt 0 ]; then
	say "$missed target(s) missed"
	[ "${EB_BENCH_STRICT:-0}" = 1 ] && status=1
fi
exit $status
