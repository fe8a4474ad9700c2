#!/usr/bin/env bash
# Scale benchmark (issue 14): how costs grow with topics, connections,
# rotations elsewhere, pending retries, groups and listeners.  One
# throwaway server; every sweep compares its contenders in one run (rounds,
# order rotating from round to round; a contender's figure is its median)
# and prints the ratio against its target:
#
#   topics       publish, 8 clients, each transaction to a random one of N
#                topics (8 partitions each), N = 1, 100, 1000:
#                N=1000 / N=1 >= 0.9; and, as PostgreSQL's own floor, plain
#                INSERTs (simple protocol) into a random one of 1 or 1000
#                plain tables of a segment table's shape (for information);
#                and N=1000 while one session LISTENs to a topic nobody
#                publishes to (for information: listeners are counted per
#                topic, so it should cost nothing)
#   connections  8 clients publish to one topic while 0, 56 or 192 more
#                sessions sit idle in transactions holding positions in
#                other topics (8, 64, 200 connections): 200 / 8 >= 0.9
#   rotation     8 clients publish to one topic while the maintenance worker
#                (eventbus.maintenance_naptime 1s, one transaction per
#                topic) rotates segments of 1000 other topics, against the
#                same with nothing to rotate: >= 0.95
#   retries      poll (4 clients, 10 events per poll, rolled back) of a group
#                with 10,000 pending future retries, against a group with
#                none: >= 0.9
#   lag          SELECT * FROM eventbus.consumer_lag, 100 groups x 16
#                partitions, each group 1,000,000 events behind: < 50 ms
#                (time, buffers and rows read)
#   wake-ups     commit-to-wake p99 (LISTEN and eventbus.wait()) with 1000
#                topics in shared memory of which 10 are active: < 20 ms;
#                publish with 6 LISTEN sessions / none: >= 0.95
#   shmem        shared memory per topic and per partition (deltas of
#                pg_shmem_allocations between settings) and the largest
#                eventbus.max_topics x max_partitions that fits in 1 GB
#
# Throughput is the steady state: pgbench reports every second (-P 1) and
# the first EB_SCALE_SKIP seconds of each run, while the new sessions load
# their caches, are left out.  Commits are synchronous_commit = off so
# that the figures show the CPU cost of the code, not the disk's flushes;
# autovacuum is off (the script vacuums where it matters) so that it does
# not land in one contender's run and not another's.
#
# Writes bench/results/<timestamp>-scale.txt and the plots
# docs/scale-<sweep>.png (gnuplot; installed from Debian if missing).
# See docs/benchmarks.md, section "Scale".
#
# Settings (environment):
#   EB_SCALE_SECONDS=8         seconds per pgbench run
#   EB_SCALE_SKIP=3            seconds at the start of each run not counted
#   EB_SCALE_TOPIC_SECONDS=    seconds per run of the topic sweep (default: twice
#                              EB_SCALE_SECONDS)
#   EB_SCALE_TOPIC_SKIP=       seconds not counted there (default: EB_SCALE_SECONDS)
#   EB_SCALE_ROUNDS=3          rounds
#   EB_SCALE_TOPICS=1000       topics of the largest N (and of the idle, rotation
#                              and wake-up sweeps)
#   EB_SCALE_LAG_EVENTS=1000000  events of lag of each group (the lag topic's size)
#   EB_SCALE_LAG_GROUPS=100    groups on the lag topic
#   EB_SCALE_RETRIES=10000     pending retries of the retry group
#   EB_SCALE_POLL_EVENTS=      events written for the poll sweep (default: the
#                              retries and 40,000 more)
#   EB_SCALE_SWEEPS="topics connections rotation retries lag wakeups shmem"
#   EB_SCALE_PLOTS=1           write docs/scale-*.png (0: no plots)
#   EB_BENCH_STRICT=1          exit 1 when a target is missed
#   EB_BENCH_KEEP=1            keep the server's directory
#
# Holds the machine-wide test lock (/tmp/pg_eventbus-test.lock) while it
# installs and runs, like scripts/test.sh.
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
. "$(dirname "$0")/common.sh"

BENCH_DIR="$EB_ROOT/bench"
SECS=${EB_SCALE_SECONDS:-8}
SKIP=${EB_SCALE_SKIP:-3}
# the topic sweep: a new session loads every topic it publishes to (its
# cache entry, relcache entries and plans of the segment tables), which takes
# seconds for 1000 topics: longer runs, and only their second half counted
TOPIC_SECS=${EB_SCALE_TOPIC_SECONDS:-$((SECS * 2))}
TOPIC_SKIP=${EB_SCALE_TOPIC_SKIP:-$SECS}
ROUNDS=${EB_SCALE_ROUNDS:-3}
NTOPICS=${EB_SCALE_TOPICS:-1000}
LAG_EVENTS=${EB_SCALE_LAG_EVENTS:-1000000}
LAG_GROUPS=${EB_SCALE_LAG_GROUPS:-100}
LAG_PARTS=16
RETRIES=${EB_SCALE_RETRIES:-10000}
SWEEPS=${EB_SCALE_SWEEPS:-topics connections rotation retries lag wakeups shmem}
PLOTS=${EB_SCALE_PLOTS:-1}
CLIENTS=8
POLL_CLIENTS=4
NCPU=$(nproc)
PYTHON=${EB_PYTHON:-/usr/bin/python3}
POLL_EVENTS=${EB_SCALE_POLL_EVENTS:-$((RETRIES + 40000))}
POLL_EVENTS=$(((POLL_EVENTS + 3999) / 4000 * 4000))

for v in SECS ROUNDS NTOPICS LAG_EVENTS LAG_GROUPS RETRIES POLL_EVENTS; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
		echo "scale: $v must be a positive integer (got '${!v}')" >&2
		exit 2
	fi
done
[[ $SKIP =~ ^[0-9]+$ ]] && [ "$SKIP" -lt "$SECS" ] ||
	{ echo "scale: EB_SCALE_SKIP must be an integer below EB_SCALE_SECONDS" >&2; exit 2; }
[[ $TOPIC_SKIP =~ ^[0-9]+$ ]] && [[ $TOPIC_SECS =~ ^[1-9][0-9]*$ ]] && [ "$TOPIC_SKIP" -lt "$TOPIC_SECS" ] ||
	{ echo "scale: EB_SCALE_TOPIC_SKIP must be an integer below EB_SCALE_TOPIC_SECONDS" >&2; exit 2; }
[ "$NTOPICS" -ge 100 ] || { echo "scale: EB_SCALE_TOPICS must be at least 100" >&2; exit 2; }
want() { [[ " $SWEEPS " == *" $1 "* ]]; }
# the middle N of the topic sweep
MID=100
[ "$NTOPICS" -le 100 ] && MID=10

# gnuplot draws the plots; installed like scripts/deps.sh installs packages.
if [ "$PLOTS" = 1 ] && ! command -v gnuplot >/dev/null; then
	SUDO_=
	[ "$(id -u)" -ne 0 ] && SUDO_=sudo
	echo "scale: installing gnuplot-nox for the plots"
	DEBIAN_FRONTEND=noninteractive $SUDO_ apt-get install -y -q --no-install-recommends gnuplot-nox >/dev/null 2>&1 ||
		{ $SUDO_ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
			$SUDO_ apt-get install -y -q --no-install-recommends gnuplot-nox >/dev/null; } ||
		{ echo "scale: gnuplot-nox could not be installed: no plots" >&2; PLOTS=0; }
fi

# The installed extension and the servers are shared with the test suites.
exec 9>/tmp/pg_eventbus-test.lock
echo "scale: waiting for the machine-wide test lock"
flock 9

eb_build

WORK=$(eb_workdir scale)
PORT=$(eb_free_port)
STAMP=${EB_BENCH_STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}
RESULTS_DIR="$BENCH_DIR/results"
RESULTS="$RESULTS_DIR/$STAMP-scale.txt"
mkdir -p "$RESULTS_DIR"
: >"$RESULTS"
DSN="host=$WORK port=$PORT user=postgres dbname=postgres"
STOP_FILE=
BG_PIDS=()

cleanup() {
	[ -n "$STOP_FILE" ] && as_user touch "$STOP_FILE" 2>/dev/null || true
	for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	eb_bench_remove_server "scale"
}
trap cleanup EXIT

SERVER_CONF=(
	"fsync = on"
	"synchronous_commit = off"
	"shared_buffers = '1GB'"
	"max_wal_size = '16GB'"
	"checkpoint_timeout = '1h'"
	"max_connections = 250"
	"max_locks_per_transaction = 256"
	"autovacuum = off"
	"eventbus.max_topics = 4096"
	"eventbus.max_partitions = 32768"
	"eventbus.max_topics_per_database = 0"
	"eventbus.max_partitions_per_database = 0"
	"eventbus.database = 'postgres'"
	"eventbus.maintenance_naptime = '1h'"
)
eb_say "Starting a server (max_connections 250, eventbus.max_topics 4096, max_partitions 32768)"
eb_cluster_start "$WORK" "$PORT" "${SERVER_CONF[@]}"

# restart_with SETTING...: restarts the server with -c SETTING options.
restart_with() {
	local opts=
	for s in "$@"; do opts+=" -c $s"; done
	as_user pg_ctl -D "$WORK/data" -l "$WORK/server.log" -w -t 120 -m fast restart -o "$opts" >/dev/null ||
		{ tail -20 "$WORK/server.log"; return 1; }
}

psql_at() { psql_q -At "$@"; }
driver() { as_user "$PYTHON" "$BENCH_DIR/wakeups_driver.py" "$@"; }

{
	echo "pg_eventbus scale benchmark $STAMP"
	echo "commit: $(git -C "$EB_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		"($(git -C "$EB_ROOT" status --porcelain --untracked-files=no 2>/dev/null | wc -l) files changed)"
	echo "machine: $NCPU CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
		"$(awk '/MemTotal/ {printf "%.0f GB RAM", $2/1048576}' /proc/meminfo)"
	echo "server: $(as_user postgres --version), fsync on, synchronous_commit off, shared_buffers 1GB"
	echo "runs: ${SECS}s (first ${SKIP}s not counted; topic sweep ${TOPIC_SECS}s, first ${TOPIC_SKIP}s not counted)" \
		"x $ROUNDS rounds per contender, pgbench -M prepared -P 1"
	echo "sweeps: $SWEEPS"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(other_servers)"
} | tee -a "$RESULTS"

eb_say "Creating $NTOPICS topics of 8 partitions and the other objects"
psql_q -v ntopics="$NTOPICS" -v lag_groups="$LAG_GROUPS" -v lag_partitions="$LAG_PARTS" \
	-f "$BENCH_DIR/scale_setup.sql" >/dev/null

# pgb OUT SECONDS CLIENTS SCRIPT [VAR=VALUE...]: one pgbench run; sets TPS_RUN
# to the mean of the per-second rates after the first SKIP seconds.
pgb() {
	local out=$1 secs=$2 clients=$3 script=$4 defs=()
	shift 4
	for d in "$@"; do defs+=(-D "$d"); done
	psql_q -c "CHECKPOINT" >/dev/null
	if ! as_user pgbench -n -M "${PGB_MODE:-prepared}" -P 1 -T "$secs" -c "$clients" -j "$(threads_for "$clients")" \
		"${defs[@]}" -f "$script" -h "$WORK" -p "$PORT" -U postgres postgres >"$out" 2>&1; then
		cat "$out" >&2
		echo "scale: pgbench failed ($out)" >&2
		return 1
	fi
	if grep -q '^number of failed transactions: [1-9]' "$out"; then
		cat "$out" >&2
		echo "scale: failed transactions ($out)" >&2
		return 1
	fi
	TPS_RUN=$(awk -v skip="${PGB_SKIP:-$SKIP}" '/^progress: / { t = $2 + 0; if (t > skip) { s += $4; n++ } }
		END { printf "%.1f", n ? s / n : 0 }' "$out")
}

# wait_file FILE PID WHAT: waits for FILE while PID lives.
wait_file() {
	local i
	for ((i = 0; i < 600; i++)); do
		[ -f "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	echo "scale: $3 did not start" >&2
	return 1
}

# bg_ready PID READY WHAT OUT: a background process (stopped at exit, see
# cleanup) that creates the file READY once it is ready; OUT is shown if it
# never does.  bg_stop PID OUT: creates STOP_FILE, which tells it to end,
# and waits for it.
bg_ready() {
	BG_PIDS+=("$1")
	wait_file "$2" "$1" "$3" || { cat "$4" >&2; return 1; }
}
bg_stop() {
	as_user touch "$STOP_FILE"
	wait "$1" || { cat "$2" >&2; return 1; }
	STOP_FILE=
}

# listeners_start NAME N: N sessions of bench/wakeups_driver.py LISTENing to
# scale_pub (no polling), returning once they listen; listeners_stop NAME
# ends them.
listeners_start() {
	local ready="$WORK/$1.ready" longest=$((SECS > TOPIC_SECS ? SECS : TOPIC_SECS))
	STOP_FILE="$WORK/$1.stop"
	rm -f "$ready" "$STOP_FILE"
	driver subscribers --dsn "$DSN" --kind notify-only --topic scale_pub --listeners "$2" --waiters 0 \
		--ready "$ready" --stop "$STOP_FILE" --stats "$WORK/$1.json" \
		--max-seconds $((longest * 3 + 120)) >"$WORK/$1.out" 2>&1 &
	LISTENERS_PID=$!
	bg_ready "$LISTENERS_PID" "$ready" "the listening sessions" "$WORK/$1.out"
}
listeners_stop() { bg_stop "$LISTENERS_PID" "$WORK/$1.out"; }

# Contenders: label, x value of the plot, and a function "run_<id> OUT" that
# sets TPS_RUN (and INFO_RUN, shown after the figure).
declare -A LABEL XVAL TPS INFO MED
add() { LABEL[$1]=$2 XVAL[$1]=$3; }

# sweep NAME IDS...: ROUNDS rounds of every contender, the order rotating.
sweep() {
	local name=$1 ids n r j id
	shift
	ids=("$@")
	n=${#ids[@]}
	for ((r = 1; r <= ROUNDS; r++)); do
		eb_say "$name, round $r of $ROUNDS"
		for ((j = 0; j < n; j++)); do
			id=${ids[$(((j + r - 1) % n))]}
			INFO_RUN=
			"run_$id" "$WORK/$id.$r.out"
			TPS[$id]+="$TPS_RUN "
			INFO[$id]+="${INFO_RUN:+round $r: $INFO_RUN; }"
			printf '  %-52s %9.1f tx/s  (load %s)%s\n' "${LABEL[$id]}" "$TPS_RUN" \
				"$(cut -d' ' -f1 /proc/loadavg)" "${INFO_RUN:+  $INFO_RUN}" | tee -a "$RESULTS"
		done
	done
	for id in "${ids[@]}"; do MED[$id]=$(echo "${TPS[$id]}" | median); done
}

missed=0
SUMMARY=()
# verdict VALUE OP TARGET: sets VERDICT to MET or MISSED (counted)
verdict() {
	if awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {exit !(op == ">=" ? v >= t : v < t)}'; then
		VERDICT=MET
	else
		missed=$((missed + 1))
		VERDICT=MISSED
	fi
}
# ratio NAME NUM DEN TARGET: the ratio of two contenders' medians, and per round
ratio() {
	local name=$1 num=$2 den=$3 target=$4 value v rounds
	value=$(awk -v a="${MED[$num]}" -v b="${MED[$den]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
	rounds=$(awk -v a="${TPS[$num]}" -v b="${TPS[$den]}" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) printf "%s%.2f", (i > 1 ? " " : ""), (y[i] > 0 ? x[i] / y[i] : 0)
	}')
	verdict "$value" ">=" "$target"
	SUMMARY+=("$(printf '  %-50s %8s   target >= %-5s %-7s rounds: %s' "$name" "$value" "$target" "$VERDICT" "$rounds")")
	say "${SUMMARY[-1]}"
}
# table TITLE IDS...: medians and ranges
table() {
	local title=$1 id
	shift
	say ""
	say "$title (median of $ROUNDS rounds; range in brackets)"
	for id in "$@"; do
		say "$(printf '  %-52s %9.0f tx/s  [%s]' "${LABEL[$id]}" "${MED[$id]}" "$(echo "${TPS[$id]}" | minmax)")"
	done
	for id in "$@"; do echo "${TPS[$id]}"; done | noise_note
}
# plot NAME XLABEL TITLE IDS...: docs/scale-NAME.png, median tx/s and range against x
plot() {
	local name=$1 xlabel=$2 title=$3 id data
	shift 3
	[ "$PLOTS" = 1 ] || return 0
	data="$WORK/plot.$name.dat"
	: >"$data"
	for id in "$@"; do
		echo "${XVAL[$id]} ${MED[$id]} $(echo "${TPS[$id]}" | tr ' ' '\n' | grep . | sort -g | head -1)" \
			"$(echo "${TPS[$id]}" | tr ' ' '\n' | grep . | sort -g | tail -1)" >>"$data"
	done
	gnuplot <<-EOF || echo "scale: gnuplot failed for $name" >&2
		set terminal pngcairo size 640,400 noenhanced
		set output "$EB_ROOT/docs/scale-$name.png"
		set title "$title"
		set xlabel "$xlabel"
		set ylabel "transactions per second"
		set yrange [0:*]
		set offsets graph 0.05, graph 0.05, 0, 0
		set grid
		set key off
		$([ "$name" = topics ] && echo "set logscale x")
		plot "$data" using 1:2:3:4 with yerrorlines lw 2 pt 7
	EOF
	say "plot: docs/scale-$name.png"
}

# ---------- topics: publish to a random one of N topics ----------
if want topics; then
	for n in 1 "$MID" "$NTOPICS"; do
		add "topics_$n" "publish, $CLIENTS clients, random one of $n topics" "$n"
		eval "run_topics_$n() { PGB_SKIP=$TOPIC_SKIP pgb \"\$1\" \"$TOPIC_SECS\" \"$CLIENTS\" \"$BENCH_DIR/scale_publish.sql\" ntopics=$n; }"
	done
	# the floor: plain INSERTs into one of N plain tables of the same shape
	for n in 1 "$NTOPICS"; do
		add "plain_$n" "plain INSERT, $CLIENTS clients, random one of $n tables" "$n"
		eval "run_plain_$n() { PGB_MODE=simple PGB_SKIP=$TOPIC_SKIP pgb \"\$1\" \"$TOPIC_SECS\" \"$CLIENTS\" \"$BENCH_DIR/scale_plain.sql\" ntopics=$n; }"
	done
	# N topics while one session listens to another topic
	add topics_listen "publish, $CLIENTS clients, random one of $NTOPICS topics, 1 LISTEN elsewhere" "$NTOPICS"
	run_topics_listen() {
		listeners_start lsub 1 || return 1
		PGB_SKIP=$TOPIC_SKIP pgb "$1" "$TOPIC_SECS" "$CLIENTS" "$BENCH_DIR/scale_publish.sql" ntopics="$NTOPICS"
		listeners_stop lsub
	}
	sweep "Topics" topics_1 "topics_$MID" "topics_$NTOPICS" plain_1 "plain_$NTOPICS" topics_listen
fi

# ---------- connections: idle sessions holding positions elsewhere ----------
# idle_start N: N sessions, each in a transaction that published one event
# to one of the sweep's topics, idle until the stop file appears.
idle_start() {
	local n=$1 ready
	ready="$WORK/idle.ready"
	STOP_FILE="$WORK/idle.stop"
	rm -f "$ready" "$STOP_FILE"
	as_user "$PYTHON" - "$DSN" "$n" "$NTOPICS" "$ready" "$STOP_FILE" >"$WORK/idle.out" 2>&1 <<-'EOF' &
		import os, sys, time
		import psycopg
		dsn, n, ntopics, ready, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
		conns = []
		for i in range(n):
		    c = psycopg.connect(dsn, application_name="scale_idle")
		    c.execute("SELECT eventbus.publish(%s, '{}'::jsonb)", ("scale_%d" % (i % ntopics),))
		    conns.append(c)
		open(ready, "w").close()
		deadline = time.monotonic() + 3600
		while not os.path.exists(stop) and time.monotonic() < deadline:
		    time.sleep(0.1)
		for c in conns:
		    c.rollback()
		    c.close()
	EOF
	IDLE_PID=$!
	bg_ready "$IDLE_PID" "$ready" "the idle sessions" "$WORK/idle.out"
}
idle_stop() { bg_stop "$IDLE_PID" "$WORK/idle.out"; }
if want connections; then
	for c in 8 64 200; do
		add "conn_$c" "publish, $CLIENTS clients of $c connections ($((c - CLIENTS)) idle in xact)" "$c"
		eval "run_conn_$c() {
			[ $c -gt $CLIENTS ] && idle_start $((c - CLIENTS))
			INFO_RUN=\"idle in transaction: \$(psql_at -c \"SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'\")\"
			pgb \"\$1\" \"$SECS\" \"$CLIENTS\" \"$BENCH_DIR/scale_publish.sql\" ntopics=0
			[ $c -gt $CLIENTS ] && idle_stop
			return 0
		}"
	done
	sweep "Connections" conn_8 conn_64 conn_200
fi

# ---------- retries: poll with pending future retries ----------
if want retries; then
	eb_say "Writing $POLL_EVENTS events for the poll sweep, $RETRIES pending retries"
	for ((p = 0; p < 4; p++)); do
		for ((done_ = 0; done_ < POLL_EVENTS / 4; done_ += 20000)); do
			psql_q -c "SELECT count(eventbus.publish('scale_poll', jsonb_build_object('i', i), partition => $p))
				FROM generate_series(1, least(20000, $((POLL_EVENTS / 4)) - $done_)) i" >/dev/null
		done
	done
	# both groups start past the same RETRIES events; poll_retry nacked them
	# for a day (they stay pending), poll_none committed them
	psql_q <<-EOF >/dev/null
		BEGIN;
		CREATE TEMP TABLE polled AS SELECT partition, position FROM eventbus.poll('poll_retry', 'scale_poll', $RETRIES);
		SELECT count(eventbus.nack('poll_retry', 'scale_poll', partition, position, '1 day')) FROM polled;
		SELECT eventbus.commit('poll_retry', 'scale_poll', partition, max(position)) FROM polled GROUP BY partition;
		COMMIT;
		SELECT count(*) FROM eventbus.poll('poll_none', 'scale_poll', $RETRIES, commit => true);
		VACUUM ANALYZE;
	EOF
	say ""
	say "poll sweep: pending retries per group: $(psql_at -c "SELECT string_agg(group_name || ' ' || coalesce(n, 0), ', ' ORDER BY group_name)
		FROM (SELECT group_name, sum(pending_retries) n FROM eventbus.consumer_lag WHERE topic = 'scale_poll' GROUP BY 1) s")"
	add poll_none "poll, $POLL_CLIENTS clients, no pending retries" 0
	add poll_retry "poll, $POLL_CLIENTS clients, $RETRIES pending retries" "$RETRIES"
	poll_left() { psql_at -c "SELECT sum(lag) FROM eventbus.consumer_lag WHERE group_name = '$1'"; }
	run_poll_none() { pgb "$1" "$SECS" "$POLL_CLIENTS" "$BENCH_DIR/scale_poll.sql" grp=poll_none; INFO_RUN="lag left $(poll_left poll_none)"; }
	run_poll_retry() { pgb "$1" "$SECS" "$POLL_CLIENTS" "$BENCH_DIR/scale_poll.sql" grp=poll_retry; INFO_RUN="lag left $(poll_left poll_retry)"; }
	sweep "Retries" poll_none poll_retry
fi

# ---------- wake-ups: 1000 topics, 10 active ----------
if want wakeups; then
	# every topic of the sweep has its slots in shared memory
	psql_q -c "SELECT count(eventbus.publish('scale_' || i, '{}'::jsonb)) FROM generate_series(0, $NTOPICS - 1) i" >/dev/null
	add wake_none "publish, $CLIENTS clients, no subscribers" 0
	add wake_listen "publish, $CLIENTS clients, 6 LISTEN sessions" 6
	# cpu_ticks PID...: user + system clock ticks of the processes so far
	cpu_ticks() {
		local p sum=0
		for p in "$@"; do
			[ -r "/proc/$p/stat" ] && sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
		done
		echo "$sum"
	}
	# share TICKS: clock ticks over one run as a share of the machine
	share() {
		awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v s="$SECS" -v n="$(nproc)" \
			'BEGIN {printf "%.1f %% of the machine", 100 * t / hz / s / n}'
	}
	# the database worker, which sends the coalesced NOTIFYs
	db_worker() { psql_at -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_eventbus worker' AND datname = current_database()"; }
	run_wake_none() {
		local w t0 t1
		w=$(db_worker)
		t0=$(cpu_ticks $w)
		pgb "$1" "$SECS" "$CLIENTS" "$BENCH_DIR/scale_publish.sql" ntopics=0
		t1=$(cpu_ticks $w)
		INFO_RUN="database worker's CPU $(share $((t1 - t0)))"
	}
	run_wake_listen() {
		listeners_start subs 6 || return 1
		# the subscribers' own CPU (the Python driver and the 6 listening
		# backends) and the database worker's (it sends the NOTIFYs) while
		# pgbench runs: on this machine they come out of the producers' share
		local procs w t0 t1 w0 w1
		procs="$(pgrep -f wakeups_driver.py | tr '\n' ' ') $(psql_at -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE query LIKE 'LISTEN %'")"
		w=$(db_worker)
		t0=$(cpu_ticks $procs)
		w0=$(cpu_ticks $w)
		pgb "$1" "$SECS" "$CLIENTS" "$BENCH_DIR/scale_publish.sql" ntopics=0
		t1=$(cpu_ticks $procs)
		w1=$(cpu_ticks $w)
		listeners_stop subs || return 1
		INFO_RUN="$(tail -1 "$WORK/subs.out"); subscribers' CPU $(share $((t1 - t0))), database worker's CPU $(share $((w1 - w0)))"
	}
	sweep "Wake-ups, producer throughput" wake_none wake_listen

	LAT_RUNS=()
	for ((r = 1; r <= ROUNDS; r++)); do
		eb_say "Wake-up latency with $NTOPICS topics, 10 active, round $r of $ROUNDS"
		# 9 more active topics: 45 transactions/s to scale_0 .. scale_8
		as_user pgbench -n -M prepared -R 45 -T $((SECS + 10)) -c 2 -j 1 -D ntopics=9 \
			-f "$BENCH_DIR/scale_publish.sql" -h "$WORK" -p "$PORT" -U postgres postgres \
			>"$WORK/lat.bg.$r.out" 2>&1 &
		bgp=$!
		BG_PIDS+=("$bgp")
		prefix="$WORK/lat.$r"
		if ! driver latency --dsn "$DSN" --kind eventbus --topic wake_lat --rate 200 --seconds "$SECS" \
			--producers 4 --out "$prefix" >"$prefix.out" 2>&1; then
			cat "$prefix.out" >&2
			echo "scale: latency run failed" >&2
			exit 1
		fi
		kill "$bgp" 2>/dev/null || true
		wait "$bgp" 2>/dev/null || true
		sed 's/^/  /' "$prefix.out" | tee -a "$RESULTS"
		LAT_RUNS+=("$prefix")
	done
	say ""
	say "Commit-to-wake latency, $NTOPICS topics in shared memory, 10 active (all rounds pooled)"
	driver report --target-ms 20 --missed-file "$WORK/lat.missed" "${LAT_RUNS[@]}" | tee "$WORK/lat.report" | tee -a "$RESULTS"
	missed=$((missed + $(cat "$WORK/lat.missed")))
	while read -r line; do SUMMARY+=("  wake-up latency: $line"); done < <(grep 'p99 commit-to-wake' "$WORK/lat.report" || true)
fi

# ---------- lag: consumer_lag for many groups ----------
if want lag; then
	eb_say "Writing $LAG_EVENTS events to a topic of $LAG_PARTS partitions ($LAG_GROUPS groups at the start)"
	for ((done_ = 0; done_ < LAG_EVENTS; done_ += 50000)); do
		psql_q -c "SELECT count(eventbus.publish('scale_lag', jsonb_build_object('i', i), partition => i % $LAG_PARTS))
			FROM generate_series($done_, least($done_ + 50000, $LAG_EVENTS) - 1) i" >/dev/null
	done
	psql_q -c "VACUUM ANALYZE" >/dev/null
	lag_rows=$(psql_at -F ' ' -c "SELECT count(*), min(lag), sum(lag) FROM eventbus.consumer_lag WHERE topic = 'scale_lag'")
	times=()
	for i in 1 2 3 4 5; do
		times+=("$(psql_q -c '\timing on' -c "SELECT * FROM eventbus.consumer_lag" |
			sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')")
	done
	lag_ms=$(echo "${times[*]}" | median)
	# rows read: table statistics before and after one run in its own
	# session (its statistics are flushed when it exits)
	stat_sql="SELECT coalesce(sum(seq_tup_read), 0) + coalesce(sum(idx_tup_fetch), 0), coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0)
		FROM pg_stat_all_tables WHERE schemaname IN ('eventbus', 'eventbus_data')"
	read -r rows0 seq0 idx0 <<<"$(psql_at -F ' ' -c "$stat_sql")"
	psql_q -c "SELECT * FROM eventbus.consumer_lag" >/dev/null
	sleep 0.5
	read -r rows1 seq1 idx1 <<<"$(psql_at -F ' ' -c "$stat_sql")"
	buffers=$(psql_at -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT * FROM eventbus.consumer_lag" |
		sed -n 's/^ *Buffers: //p' | head -1)
	verdict "$lag_ms" "<" 50
	say ""
	say "consumer_lag, $LAG_GROUPS groups x $LAG_PARTS partitions (rows, min lag, total lag: $lag_rows)"
	say "  time: $lag_ms ms (median of 5: ${times[*]})"
	say "  rows read from eventbus tables: $((rows1 - rows0)) ($((seq1 - seq0)) sequential scans, $((idx1 - idx0)) index scans); buffers: $buffers"
	SUMMARY+=("$(printf '  %-50s %8s   target <  %-5s %-7s rows read %s' "consumer_lag ${LAG_GROUPS}x$LAG_PARTS, ms" "$lag_ms" 50 "$VERDICT" "$((rows1 - rows0))")")
	say "${SUMMARY[-1]}"
fi

# ---------- rotation: segments of 1000 other topics rotate every second ----------
if want rotation; then
	eb_say "Creating $NTOPICS topics that rotate every second (retention 8 s), restarting with maintenance_naptime 1s"
	psql_q >/dev/null <<-EOF
		SELECT format('SELECT eventbus.create_topic(%L, 1, interval ''8 seconds'')', 'rot_' || i)
		FROM generate_series(0, $NTOPICS - 1) i \gexec
	EOF
	restart_with "eventbus.maintenance_naptime=1s"
	rot_count() {
		psql_at -c "SELECT coalesce(sum(m), 0) FROM (SELECT max(segment) m FROM eventbus.segment JOIN eventbus.topic USING (topic_id)
			WHERE topic LIKE 'rot\_%' GROUP BY topic_id) s"
	}
	# feeder PREFIX: one event to each of the topics PREFIX0 .. every second,
	# in one transaction, so that rot_* (not scale_*) have something to rotate
	feeder_start() {
		STOP_FILE="$WORK/feed.stop"
		rm -f "$STOP_FILE"
		(while [ ! -f "$STOP_FILE" ]; do
			psql_q -c "SELECT count(eventbus.publish('$1' || i, '{}'::jsonb)) FROM generate_series(0, $NTOPICS - 1) i" >/dev/null
			sleep 1
		done) &
		FEED_PID=$!
		BG_PIDS+=("$FEED_PID")
	}
	feeder_stop() { as_user touch "$STOP_FILE"; wait "$FEED_PID" || true; STOP_FILE=; }
	# scans of eventbus.topic so far: each is a backend (re)loading a topic
	# into its cache, or maintenance reading it
	topic_scans() {
		sleep 1.2	# the backends' statistics reach shared memory
		psql_at -c "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_all_tables
			WHERE schemaname = 'eventbus' AND relname = 'topic'"
	}
	add rot_none "publish, $CLIENTS clients, $NTOPICS other topics fed, no rotation" 0
	add rot_1000 "publish, $CLIENTS clients, $NTOPICS other topics rotating" "$NTOPICS"
	run_rot_none() {
		local scans
		scans=$(topic_scans)
		feeder_start scale_
		pgb "$1" "$SECS" "$CLIENTS" "$BENCH_DIR/scale_publish.sql" ntopics=0
		feeder_stop
		INFO_RUN="$(($(topic_scans) - scans)) scans of eventbus.topic"
	}
	run_rot_1000() {
		local before scans
		before=$(rot_count)
		scans=$(topic_scans)
		feeder_start rot_
		pgb "$1" "$SECS" "$CLIENTS" "$BENCH_DIR/scale_publish.sql" ntopics=0
		feeder_stop
		INFO_RUN="$(($(rot_count) - before)) rotations, $(($(topic_scans) - scans)) scans of eventbus.topic"
	}
	# one pass so that every rot_ topic has its spare segment before the runs
	sleep 3
	sweep "Rotation" rot_none rot_1000
	restart_with "eventbus.maintenance_naptime=1h"
fi

# ---------- shared memory per topic and per partition ----------
if want shmem; then
	eb_say "Shared memory per topic and per partition"
	shm() {
		restart_with "eventbus.max_topics=$1" "eventbus.max_partitions=$2"
		psql_at -c "SELECT sum(allocated_size) FROM pg_shmem_allocations"
	}
	s0=$(shm 4096 32768)
	s1=$(shm $((4096 + 100000)) 32768)
	s2=$(shm 4096 $((32768 + 100000)))
	per_topic=$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.1f", (b - a) / 100000}')
	per_part=$(awk -v a="$s0" -v b="$s2" 'BEGIN {printf "%.1f", (b - a) / 100000}')
	fit=$(awk -v t="$per_topic" -v p="$per_part" 'BEGIN {printf "%d", 1073741824 / (t + 8 * p)}')
	fit_p=$(awk -v t="$per_topic" -v p="$per_part" 'BEGIN {printf "%d", (1073741824 - 1024 * t) / p}')
	say ""
	say "Shared memory (pg_shmem_allocations, deltas of 100,000 topics and of 100,000 partitions)"
	say "  per topic:     $per_topic bytes"
	say "  per partition: $per_part bytes"
	say "  fits in 1 GB:  max_topics $fit x max_partitions $((fit * 8)) (8 partitions per topic),"
	say "                 or max_topics 1024 x max_partitions $fit_p"
	SUMMARY+=("  shared memory: $per_topic bytes per topic, $per_part bytes per partition; 1 GB: $fit topics x $((fit * 8)) partitions")
	restart_with "eventbus.maintenance_naptime=1h"
fi

say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg), $(other_servers)"
if want topics; then
	table "Topics: publish, $CLIENTS clients, each transaction to a random one of N topics (8 partitions each)" \
		topics_1 "topics_$MID" "topics_$NTOPICS" plain_1 "plain_$NTOPICS" topics_listen
	plot topics "topics (N)" "publish to a random one of N topics, 8 clients" topics_1 "topics_$MID" "topics_$NTOPICS"
fi
if want connections; then
	table "Connections: $CLIENTS publishing, the rest idle in transactions holding positions" conn_8 conn_64 conn_200
	plot connections "open connections (8 publish)" "publish with idle connections holding positions" conn_8 conn_64 conn_200
fi
if want rotation; then
	table "Rotation: publishing while maintenance rotates $NTOPICS other topics every second" rot_none rot_1000
	for id in rot_none rot_1000; do [ -n "${INFO[$id]:-}" ] && say "  ${LABEL[$id]}: ${INFO[$id]}"; done
	plot rotation "other topics rotating every second" "publish while other topics rotate" rot_none rot_1000
fi
if want retries; then
	table "Retries: poll with pending future retries" poll_none poll_retry
	plot retries "pending retries in the group" "poll, 4 clients, 10 events per poll" poll_none poll_retry
fi
if want wakeups; then
	table "Wake-ups: producers with 6 LISTEN sessions" wake_none wake_listen
	plot wakeups "LISTEN sessions" "publish with LISTEN sessions, $NTOPICS topics" wake_none wake_listen
fi

say ""
say "Ratios and targets"
want topics && ratio "topics: N=$NTOPICS / N=1" "topics_$NTOPICS" topics_1 0.9
want topics && ratio "topics: N=$MID / N=1 (for information; target 0)" "topics_$MID" topics_1 0
want topics && ratio "plain INSERT: N=$NTOPICS / N=1 tables (PostgreSQL's floor; target 0)" "plain_$NTOPICS" plain_1 0
want topics && ratio "topics: N=$NTOPICS, 1 LISTEN elsewhere / none (target 0)" topics_listen "topics_$NTOPICS" 0
want connections && ratio "connections: 200 / 8" conn_200 conn_8 0.9
want connections && ratio "connections: 64 / 8 (for information; target 0)" conn_64 conn_8 0
want rotation && ratio "rotation: $NTOPICS rotating / none" rot_1000 rot_none 0.95
want retries && ratio "poll: $RETRIES retries / none" poll_retry poll_none 0.9
want wakeups && ratio "publish: 6 LISTEN / none" wake_listen wake_none 0.95
say ""
say "Summary"
for line in "${SUMMARY[@]}"; do say "$line"; done

{
	echo ""
	echo "Raw pgbench output"
	for f in "$WORK"/*.[0-9]*.out; do
		[ -f "$f" ] || continue
		echo ""
		echo "--- $(basename "$f" .out)"
		grep -v '^progress: ' "$f"
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
