#!/usr/bin/env bash
# Hot paths benchmark: this tree against a base commit (EB_HOT_BASE), in
# one run, on the paths that grow with the installation rather than with
# the work (docs/benchmarks.md, "Hot paths").  Each contender is built,
# installed and given its own throwaway server (fsync off,
# synchronous_commit off: the figures are CPU and locking, not the disk),
# with 1,000 topics of 8 partitions and a consumer topic (bench/hot_setup.sql).
#
#   pub_1        pgbench, CLIENTS clients, one event per transaction to one
#                topic (bench/hot_publish_one.sql)
#   pub_1000     the same, each transaction to a random one of the 1,000
#                topics (bench/hot_publish_topics.sql)
#   poll_none    poll() of 100 events without committing
#                (bench/hot_poll.sql), group without retries
#   poll_retry   the same, group with 10,000 retries due tomorrow
#   wake_10      4 connections publishing 400 transactions/s to 10 of the
#                1,000 topics; the figure is the CPU time (ms per second) of
#                the database worker that sends the notifications
#
# Rounds alternate the contenders (base, new, new, base, ...); a figure is
# the median of its rounds.  Prints a table with the ratios new / base and
# writes it to bench/results/<timestamp>-hot.txt.
#
# The contenders are installed into the host's PostgreSQL one after the
# other, so the whole run holds the test lock (/tmp/pg_eventbus-test.lock)
# unless EB_HOT_LOCKED=1 says the caller holds it.
#
# Settings (environment):
#   EB_HOT_BASE=5c49445         the commit to compare with
#   EB_BENCH_SECONDS=10         seconds per pgbench run
#   EB_BENCH_ROUNDS=2           rounds (each runs every contender once)
#   EB_BENCH_CLIENTS=8          pgbench clients of the publish and poll runs
#   EB_HOT_MAX_TOPICS=4096      eventbus.max_topics of the servers (the
#                               notify worker of the base scans them all)
#   EB_BENCH_KEEP=1             keep the servers' directories
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
. "$(dirname "$0")/common.sh"

BENCH_DIR="$EB_ROOT/bench"
BASE=${EB_HOT_BASE:-5c49445}
SECS=${EB_BENCH_SECONDS:-10}
ROUNDS=${EB_BENCH_ROUNDS:-2}
CLIENTS=${EB_BENCH_CLIENTS:-8}
MAX_TOPICS=${EB_HOT_MAX_TOPICS:-4096}
NCPU=$(nproc)
WORKLOADS="pub_1 pub_1000 poll_none poll_retry wake_10"

for v in SECS ROUNDS CLIENTS MAX_TOPICS; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
		echo "hot: $v must be a positive integer (got '${!v}')" >&2
		exit 2
	fi
done
git -C "$EB_ROOT" rev-parse --verify -q "$BASE^{commit}" >/dev/null ||
	{ echo "hot: EB_HOT_BASE=$BASE is not a commit" >&2; exit 2; }

if [ "${EB_HOT_LOCKED:-0}" != 1 ]; then
	exec 9>/tmp/pg_eventbus-test.lock
	eb_say "Waiting for the test lock"
	flock 9
fi

STAMP=${EB_BENCH_STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}
RESULTS_DIR="$BENCH_DIR/results"
RESULTS="$RESULTS_DIR/$STAMP-hot.txt"
mkdir -p "$RESULTS_DIR"
: >"$RESULTS"

TOP=$(eb_workdir hot)
WORK=$TOP
PIDS_TO_STOP=
cleanup() {
	local c
	for c in base new; do
		[ -d "$TOP/$c" ] && WORK=$TOP/$c eb_cluster_stop "$TOP/$c"
	done
	if [ "${EB_BENCH_KEEP:-0}" = 1 ]; then
		echo "hot: servers kept in $TOP"
	else
		rm -rf "$TOP"
	fi
}
trap cleanup EXIT

# Sources of the contenders: the base commit and this tree as it is (a
# copy, built from clean with the default flags).
SRC_BASE=$TOP/src-base
SRC_NEW=$TOP/src-new
mkdir -p "$SRC_BASE" "$SRC_NEW"
git -C "$EB_ROOT" archive "$BASE" | tar -x -C "$SRC_BASE"
tar -C "$EB_ROOT" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
	--exclude=./bench/results -cf - . | tar -x -C "$SRC_NEW"
eb_say "Building base ($BASE) and new ($(git -C "$EB_ROOT" rev-parse --short HEAD), working tree)"
make -C "$SRC_BASE" -s PG_CONFIG="$PG_CONFIG" all >/dev/null
make -C "$SRC_NEW" -s PG_CONFIG="$PG_CONFIG" all >/dev/null

src_of() { [ "$1" = base ] && echo "$SRC_BASE" || echo "$SRC_NEW"; }

install_contender() {
	local src
	src=$(src_of "$1")
	if [ -n "$SUDO" ] && ! [ -w "$($PG_CONFIG --pkglibdir)" ]; then
		$SUDO make -C "$src" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
	else
		make -C "$src" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
	fi
}

declare -A PORTS
start_contender() {
	local c=$1 dir=$TOP/$1
	install_contender "$c"
	WORK=$dir
	if [ ! -d "$dir/data" ]; then
		mkdir -p "$dir"
		chmod 755 "$dir"
		[ "$(id -u)" -eq 0 ] && chown "$EB_USER" "$dir"
		PORTS[$c]=$(eb_free_port)
		PORT=${PORTS[$c]}
		eb_cluster_start "$dir" "$PORT" \
			"synchronous_commit = off" \
			"shared_buffers = '512MB'" \
			"max_wal_size = '8GB'" \
			"checkpoint_timeout = '1h'" \
			"max_connections = 60" \
			"eventbus.database = 'postgres'" \
			"eventbus.max_topics = $MAX_TOPICS" \
			"eventbus.max_topics_per_database = 0" \
			"eventbus.max_partitions_per_database = 0" \
			"eventbus.notify_interval = '10ms'"
		local t0=$SECONDS
		psql_q -f "$BENCH_DIR/hot_setup.sql" >/dev/null
		echo "$c: set up in $((SECONDS - t0)) s"
	else
		PORT=${PORTS[$c]}
		as_user pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
	fi
}

stop_contender() {
	eb_cluster_stop "$TOP/$1"
}

# pgbench_tps ARGS...: transactions per second of a pgbench run.
pgbench_tps() {
	as_user pgbench -n -M prepared -h "$WORK" -p "$PORT" -U postgres "$@" postgres 2>&1 |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}

worker_pid() {
	local pid i
	for ((i = 0; i < 100; i++)); do
		pid=$(psql_q -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_eventbus worker' AND datname = 'postgres'")
		[ -n "$pid" ] && { echo "$pid"; return; }
		sleep 0.1
	done
}

cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# run_workloads CONTENDER: appends "workload figure" lines to $TOP/CONTENDER.figs
run_workloads() {
	local c=$1 t w0 w1 pid
	local th
	th=$(threads_for "$CLIENTS")
	# warm-up: every backend caches the topics it publishes to
	pgbench_tps -c "$CLIENTS" -j "$th" -T 2 -D ntopics=1000 -f "$BENCH_DIR/hot_publish_topics.sql" >/dev/null
	t=$(pgbench_tps -c "$CLIENTS" -j "$th" -T "$SECS" -f "$BENCH_DIR/hot_publish_one.sql")
	echo "pub_1 $t" >>"$TOP/$c.figs"
	t=$(pgbench_tps -c "$CLIENTS" -j "$th" -T "$SECS" -D ntopics=1000 -f "$BENCH_DIR/hot_publish_topics.sql")
	echo "pub_1000 $t" >>"$TOP/$c.figs"
	t=$(pgbench_tps -c "$CLIENTS" -j "$th" -T "$SECS" -D grp=hot_none -f "$BENCH_DIR/hot_poll.sql")
	echo "poll_none $t" >>"$TOP/$c.figs"
	t=$(pgbench_tps -c "$CLIENTS" -j "$th" -T "$SECS" -D grp=hot_retry -f "$BENCH_DIR/hot_poll.sql")
	echo "poll_retry $t" >>"$TOP/$c.figs"
	pid=$(worker_pid)
	w0=$(cpu_ms "$pid")
	pgbench_tps -c 4 -j 2 -R 400 -T "$SECS" -D ntopics=10 -f "$BENCH_DIR/hot_publish_topics.sql" >/dev/null
	w1=$(cpu_ms "$pid")
	echo "wake_10 $(awk -v a="$w0" -v b="$w1" -v s="$SECS" 'BEGIN {printf "%.2f", (b - a) / s}')" >>"$TOP/$c.figs"
}

{
	echo "pg_eventbus hot paths benchmark $STAMP"
	echo "base: $(git -C "$EB_ROOT" rev-parse --short "$BASE"); new: $(git -C "$EB_ROOT" rev-parse --short HEAD)" \
		"($(git -C "$EB_ROOT" status --porcelain 2>/dev/null | wc -l) files changed or untracked)"
	echo "machine: $NCPU CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "server: $(as_user postgres --version), fsync off, synchronous_commit off," \
		"eventbus.max_topics $MAX_TOPICS, notify_interval 10ms"
	echo "runs: ${SECS}s x $ROUNDS rounds per contender, pgbench -M prepared, $CLIENTS clients"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(other_servers)"
} | tee -a "$RESULTS"

for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order="base new"; else order="new base"; fi
	for c in $order; do
		eb_say "Round $r: $c"
		start_contender "$c"
		run_workloads "$c"
		stop_contender "$c"
	done
done

fig() { awk -v w="$2" '$1 == w {printf "%s ", $2}' "$TOP/$1.figs"; }

say ""
say "$(printf '%-12s %14s %14s %8s   %s' workload base new new/base unit)"
for w in $WORKLOADS; do
	b=$(fig base "$w" | median)
	n=$(fig new "$w" | median)
	unit="transactions/s"
	[ "$w" = wake_10 ] && unit="worker CPU ms per s (lower is better)"
	say "$(printf '%-12s %14s %14s %8s   %s' "$w" "$b" "$n" \
		"$(awk -v b="$b" -v n="$n" 'BEGIN {if (b > 0) printf "%.2f", n / b; else print "-"}')" "$unit")"
done
say ""
say "within a contender: pub_1000 / pub_1 base $(awk -v a="$(fig base pub_1000 | median)" -v b="$(fig base pub_1 | median)" 'BEGIN {printf "%.2f", a / b}')," \
	"new $(awk -v a="$(fig new pub_1000 | median)" -v b="$(fig new pub_1 | median)" 'BEGIN {printf "%.2f", a / b}');" \
	"poll_retry / poll_none base $(awk -v a="$(fig base poll_retry | median)" -v b="$(fig base poll_none | median)" 'BEGIN {printf "%.2f", a / b}')," \
	"new $(awk -v a="$(fig new poll_retry | median)" -v b="$(fig new poll_none | median)" 'BEGIN {printf "%.2f", a / b}')"
for c in base new; do
	say "$c rounds: $(for w in $WORKLOADS; do printf '%s=[%s] ' "$w" "$(fig "$c" "$w")"; done)"
done
echo "results: $RESULTS"
