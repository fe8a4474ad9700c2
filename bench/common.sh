# Helpers shared by bench/run.sh, bench/relay.sh and bench/wakeups.sh,
# sourced after scripts/common.sh.  The scripts set WORK (the throwaway
# server's directory), PORT, RESULTS (the results file) and NCPU.

# Console and results file.
say() { echo "$*" | tee -a "$RESULTS"; }

psql_q() {
	as_user psql -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres -d postgres "$@"
}

# Median and range of the numbers on standard input (space-separated).
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { tr ' ' '\n' | grep . | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.0f-%.0f", lo, hi}'; }

# noise_note [SEE]: reads each contender's per-round figures, a line each;
# when one contender's runs differ by more than 10 %, says that its ratios
# are not to be trusted (SEE: where to read more).
noise_note() {
	local noisy
	noisy=$(awk '{
		lo = hi = $1; s = 0
		for (i = 1; i <= NF; i++) { if ($i < lo) lo = $i; if ($i > hi) hi = $i; s += $i }
		if (NF > 1 && (hi - lo) / (s / NF) > w) w = (hi - lo) / (s / NF)
	} END {printf "%.0f", w * 100}')
	if [ "$noisy" -gt 10 ]; then
		say ""
		say "note: runs of one contender differ by up to $noisy % between rounds: the machine was busy or"
		say "      the runs too short; compare the ratios with care${1:+ ($1)}"
	fi
}

# Other servers on the machine disturb the figures: say how many run.
other_servers() {
	local n
	n=$(pgrep -a -x postgres | grep -- ' -D ' | grep -vcF -- "$WORK/data" || true)
	echo "other PostgreSQL servers running: $n"
}

# pgbench threads for CLIENTS clients: EB_BENCH_THREADS or the CPUs, at most
# the clients.
threads_for() {
	local c=$1 t=${EB_BENCH_THREADS:-$NCPU}
	[ "$t" -gt "$c" ] && t=$c
	echo "$t"
}

# eb_bench_remove_server LABEL: stops the server (if it still runs) and
# removes its directory, or keeps it with EB_BENCH_KEEP=1.
eb_bench_remove_server() {
	eb_cluster_stop "$WORK"
	if [ "${EB_BENCH_KEEP:-0}" = 1 ]; then
		echo "$1: server directory kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
