# Workload D of bench/run.sh, sourced by it (not a command of its own):
# consumer groups against PgQ batches and a SKIP LOCKED queue table.
#
# consume_fill.sql writes the same EB_BENCH_CONSUME_EVENTS events, before
# anything is timed, into a 4-partition topic, two PgQ queues (ticked every
# 100 and every 1000 events) and a staging table that refills the plain
# queue.  Then, for batches of 100 and 1000 and for 1 and 4 consumers, each
# contender drains them once, one batch per transaction:
#
#   poll   SELECT count(*) FROM eventbus.poll(group, topic, batch, commit => true)
#   pollc  eventbus.poll(group, topic, batch), then eventbus.commit() for each
#          partition it returned, in the same statement
#   pgq    pgq.next_batch, pgq.get_batch_events, pgq.finish_batch
#          (bench.pgq_consume(), one call per batch)
#   skip   DELETE FROM queue WHERE id IN (SELECT id ... ORDER BY id LIMIT batch
#          FOR UPDATE SKIP LOCKED) RETURNING ...
#
# A run is pgbench -t with the transactions that drain the events once
# (with 4 PgQ consumers, each drains them all: every PgQ consumer reads
# every event).  Its rate is the events consumed, counted from the
# server's state afterwards (committed positions, finished PgQ batches,
# rows left in the queue), over pgbench's elapsed time.  Around each run it
# reads the server's WAL counters (pg_stat_wal) and the rows inserted,
# updated and deleted in user tables (pg_stat_user_tables): the writes per
# batch and per event.
#
# Uses from run.sh: psql_q, say, threads_for, as_user, median, minmax, the arrays
# TPS, C_LABEL, C_CLIENTS, C_EVENTS, MED_EV, and WORK, PORT, BENCH_DIR,
# CONSUME_EVENTS, ROUNDS, WARMUP, missed, BG_PID.

# The associative arrays it fills are declared in run.sh.
# shellcheck shell=bash disable=SC2034,SC2004
D_BATCHES="100 1000"
D_MEMBERS="1 4"
D_KINDS="poll pollc pgq skip"
declare -A D_KIND D_BATCH D_MEMBER D_AGG D_LAT D_WREC D_WFPI D_WBYTES D_ROWS D_HOT D_WREC_EV D_DONE D_READS
declare -A D_KIND_LABEL=(
	[poll]="eventbus poll(commit => true)"
	[pollc]="eventbus poll, then commit()"
	[pgq]="PgQ next_batch/get_batch_events/finish"
	[skip]="queue table DELETE ... SKIP LOCKED"
)
declare -A D_FIRST_TICK
D_FLOOR=
D_GROUP=
D_SEQ=0

for b in $D_BATCHES; do
	for m in $D_MEMBERS; do
		for k in $D_KINDS; do
			id=d_${k}_${b}_${m}
			D_KIND[$id]=$k D_BATCH[$id]=$b D_MEMBER[$id]=$m
			C_LABEL[$id]=${D_KIND_LABEL[$k]}
			C_CLIENTS[$id]=$m
			C_EVENTS[$id]=1
		done
	done
done

# The ids of one batch size and member count, rotated by N places.
d_ids() {
	local b=$1 m=$2 rot=$3 ids=() n j
	for k in $D_KINDS; do ids+=("d_${k}_${b}_${m}"); done
	n=${#ids[@]}
	for ((j = 0; j < n; j++)); do echo "${ids[$(((j + rot) % n))]}"; done
}

consume_fill() {
	local t0 t1
	eb_say "Workload D: writing $CONSUME_EVENTS events into the topic, the PgQ queues and the staging table"
	t0=$(date +%s)
	psql_q -v events="$CONSUME_EVENTS" -f "$BENCH_DIR/consume_fill.sql" >/dev/null
	# everything all-visible and analyzed, so no contender pays for the
	# first reader's hint bits and autovacuum finds nothing to do
	psql_q -c "VACUUM ANALYZE" >/dev/null
	t1=$(date +%s)
	for b in $D_BATCHES; do
		D_FIRST_TICK[$b]=$(psql_q -At -c "SELECT min(tick_id) FROM pgq.tick
			WHERE tick_queue = (SELECT queue_id FROM pgq.queue WHERE queue_name = 'bench_d$b')")
	done
	say "workload D: $CONSUME_EVENTS events written in $((t1 - t0)) s (not timed)"
}

# Puts a contender back at the start: a new group reading from the
# earliest event, PgQ consumers back at the first tick, a refilled queue;
# its events in shared buffers (workload B writes more than they hold).
consume_reset() {
	local id=$1 b=${D_BATCH[$1]}
	case ${D_KIND[$id]} in
	poll | pollc)
		D_SEQ=$((D_SEQ + 1))
		D_GROUP="bench_d_$D_SEQ"
		psql_q -c "SELECT eventbus.create_group('$D_GROUP', 'bench_d', 'earliest')" \
			-c "VACUUM eventbus.group_partition" -c "SELECT bench.d_prewarm('bench_d')" >/dev/null
		;;
	pgq)
		psql_q -c "SELECT count(pgq.register_consumer_at('bench_d$b', 'c' || c, ${D_FIRST_TICK[$b]}))
			FROM generate_series(0, 3) c" -c "VACUUM pgq.subscription" \
			-c "SELECT bench.d_prewarm('bench_d$b')" >/dev/null
		;;
	skip)
		psql_q -c "TRUNCATE bench.d_queue" \
			-c "INSERT INTO bench.d_queue (key, value) SELECT key, value FROM bench.d_events ORDER BY i" \
			-c "VACUUM ANALYZE bench.d_queue" >/dev/null
		;;
	esac
	psql_q -c "CHECKPOINT" >/dev/null
}

# Events consumed since the reset (all consumers together).
consume_count() {
	local id=$1 b=${D_BATCH[$1]} m=${D_MEMBER[$1]}
	case ${D_KIND[$id]} in
	poll | pollc)
		psql_q -At -c "SELECT sum(committed_position + 1) FROM eventbus.group_status('$D_GROUP', 'bench_d')"
		;;
	pgq)
		# finished batches times their size (consume_fill.sql checks the size)
		psql_q -At -c "SELECT $b * count(*) FROM pgq.subscription s
			JOIN pgq.queue q ON q.queue_id = s.sub_queue
			JOIN pgq.consumer c ON c.co_id = s.sub_consumer
			JOIN pgq.tick t ON t.tick_queue = s.sub_queue
			WHERE q.queue_name = 'bench_d$b' AND c.co_name IN (SELECT 'c' || n FROM generate_series(0, $m - 1) n)
			  AND t.tick_id > ${D_FIRST_TICK[$b]} AND t.tick_id <= s.sub_last_tick"
		;;
	skip)
		psql_q -At -c "SELECT $CONSUME_EVENTS - count(*) FROM bench.d_queue"
		;;
	esac
}

# WAL records, full-page images, WAL bytes, rows inserted + updated +
# deleted and HOT-updated in user tables (server-wide), and blocks this
# database read from outside shared buffers.
consume_counters() {
	psql_q -At -F ' ' -c "SELECT w.wal_records, w.wal_fpi, w.wal_bytes,
		(SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables),
		(SELECT coalesce(sum(n_tup_hot_upd), 0) FROM pg_stat_user_tables),
		(SELECT blks_read FROM pg_stat_database WHERE datname = current_database())
		FROM pg_stat_wal w"
}

# Backends flush their statistics when they exit.
consume_wait_idle() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ "$(psql_q -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" = 0 ] && return 0
		sleep 0.05
	done
}

# consume_run ID OUT DIVISOR [PERFDATA]: resets the contender, drains
# 1/DIVISOR of the events and sets R_* to the run's figures.  With
# PERFDATA, perf records the server during the drain.
consume_run() {
	local id=$1 out=$2 div=$3 pdata=${4:-} b=${D_BATCH[$1]} m=${D_MEMBER[$1]} kind=${D_KIND[$1]}
	local txs defs=() before after tps processed lat consumed expected
	case $kind in
	poll | pollc) txs=$((CONSUME_EVENTS / b / m / div)) ;;
	pgq) txs=$((CONSUME_EVENTS / b / div)) ;;
	skip) txs=$((CONSUME_EVENTS / b / m / div)) ;;
	esac
	[ "$txs" -ge 1 ] || txs=1
	consume_reset "$id"
	case $kind in
	poll) defs=(-D "group=$D_GROUP" -D "batch=$b" -f "$BENCH_DIR/consume_poll.sql") ;;
	pollc) defs=(-D "group=$D_GROUP" -D "batch=$b" -f "$BENCH_DIR/consume_poll_commit.sql") ;;
	pgq) defs=(-D "queue=bench_d$b" -f "$BENCH_DIR/consume_pgq.sql") ;;
	skip) defs=(-D "batch=$b" -f "$BENCH_DIR/consume_skip_locked.sql") ;;
	esac
	before=$(consume_counters)
	if [ -n "$pdata" ]; then
		perf record -q -g -o "$pdata" -p "$(head -1 "$WORK/data/postmaster.pid")" >/dev/null 2>&1 &
		BG_PID=$!
		sleep 0.5
	fi
	if ! as_user pgbench -n -M prepared -t "$txs" -c "$m" -j "$(threads_for "$m")" "${defs[@]}" \
		-h "$WORK" -p "$PORT" -U postgres postgres >"$out" 2>&1; then
		cat "$out" >&2
		echo "bench: pgbench failed for $id" >&2
		return 1
	fi
	if [ -n "$pdata" ]; then
		kill -INT "$BG_PID" 2>/dev/null || true
		wait "$BG_PID" || true
		BG_PID=
	fi
	if grep -q '^number of failed transactions: [1-9]' "$out"; then
		cat "$out" >&2
		echo "bench: $id had failed transactions" >&2
		return 1
	fi
	consume_wait_idle
	after=$(consume_counters)
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")
	processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	consumed=$(consume_count "$id")
	expected=$((CONSUME_EVENTS / div))
	if [ "$kind" = pgq ]; then expected=$((CONSUME_EVENTS * m / div)); fi
	if [ "${consumed:-0}" -le 0 ]; then
		echo "bench: $id consumed nothing (see $out)" >&2
		return 1
	fi
	# shellcheck disable=SC2086
	read -r R_AGG R_PER R_WREC R_WFPI R_WBYTES R_ROWS R_HOT R_WREC_EV R_DONE R_READS < <(awk \
		-v tps="$tps" -v n="$processed" -v ev="$consumed" -v want="$expected" -v m="$m" \
		-v b="$before" -v a="$after" 'BEGIN {
		split(b, x, " "); split(a, y, " ")
		agg = ev * tps / n
		printf "%.1f %.1f %.2f %.3f %.0f %.2f %.2f %.4f %.1f %.2f\n", agg, agg / m,
			(y[1] - x[1]) / n, (y[2] - x[2]) / n, (y[3] - x[3]) / n,
			(y[4] - x[4]) / n, (y[5] - x[5]) / n, (y[1] - x[1]) / ev, 100 * ev / (want > 0 ? want : 1),
			(y[6] - x[6]) / n
	}')
	R_LAT=$lat
}

# Unrecorded: each kind of contender drains a tenth of the events once.
consume_warmup() {
	[ "$WARMUP" -gt 0 ] || return 0
	eb_say "Workload D: warm-up (a tenth of the events, each kind of contender)"
	for id in $(d_ids 100 4 0); do
		consume_run "$id" "$WORK/warmup.out" 10
	done
}

# One-row UPDATE transactions, 1 client: the commit every consumer
# transaction waits for (synchronous_commit = on).
consume_floor() {
	local out=$1
	as_user pgbench -n -M prepared -T 3 -c 1 -j 1 -f "$BENCH_DIR/consume_floor.sql" \
		-h "$WORK" -p "$PORT" -U postgres postgres >"$out" 2>&1 || { cat "$out" >&2; return 1; }
	D_FLOOR+="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out") "
}

consume_round() {
	local r=$1 id
	for b in $D_BATCHES; do
		for m in $D_MEMBERS; do
			for id in $(d_ids "$b" "$m" $((r - 1))); do
				consume_run "$id" "$WORK/$id.$r.out" 1
				TPS[$id]+="$R_PER "
				D_AGG[$id]+="$R_AGG "
				D_LAT[$id]+="$R_LAT "
				D_WREC[$id]+="$R_WREC "
				D_WFPI[$id]+="$R_WFPI "
				D_WBYTES[$id]+="$R_WBYTES "
				D_ROWS[$id]+="$R_ROWS "
				D_HOT[$id]+="$R_HOT "
				D_WREC_EV[$id]+="$R_WREC_EV "
				D_DONE[$id]+="$R_DONE "
				D_READS[$id]+="$R_READS "
				printf '  D  %-40s %4d x%d %9.0f ev/s %9.0f /consumer %7.2f ms/batch %6.1f WAL rec/batch (load %s)\n' \
					"${C_LABEL[$id]}" "$b" "$m" "$R_AGG" "$R_PER" "$R_LAT" "$R_WREC" \
					"$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$RESULTS"
			done
		done
	done
	consume_floor "$WORK/d_floor.$r.out"
}

consume_report() {
	local id med
	say ""
	say "D. consume $CONSUME_EVENTS events, one batch per transaction (poll + commit), median of $ROUNDS rounds"
	say "   (with 4 PgQ consumers each reads all $CONSUME_EVENTS events; events/s counts every delivery)"
	say "$(printf '  %-40s %5s %7s %10s %12s %9s %8s  %s' contender batch members 'events/s' 'per consumer' 'ms/batch' 'drained' 'range per consumer')"
	for b in $D_BATCHES; do
		for m in $D_MEMBERS; do
			for id in $(d_ids "$b" "$m" 0); do
				med=$(echo "${TPS[$id]}" | median)
				MED_EV[$id]=$med
				say "$(printf '  %-40s %5d %7d %10.0f %12.0f %9.2f %7.1f%%  [%s]' "${C_LABEL[$id]}" "$b" "$m" \
					"$(echo "${D_AGG[$id]}" | median)" "$med" "$(echo "${D_LAT[$id]}" | median)" \
					"$(echo "${D_DONE[$id]}" | median)" "$(echo "${TPS[$id]}" | minmax)")"
			done
		done
	done
	med=$(echo "$D_FLOOR" | median)
	say "$(printf '  commit floor: a one-row UPDATE per transaction, 1 client: %.0f tx/s, %.2f ms each' \
		"$med" "$(awk -v t="$med" 'BEGIN {print (t > 0 ? 1000 / t : 0)}')")"

	say ""
	say "D. writes per batch (medians; whole server: WAL from pg_stat_wal, rows written from"
	say "   pg_stat_user_tables; reads: blocks not found in shared buffers, pg_stat_database)"
	say "$(printf '  %-40s %5s %7s %9s %7s %10s %7s %7s %9s %7s' contender batch members 'WAL rec' 'FPI' 'WAL bytes' 'rows' '(HOT)' 'WAL rec' 'reads')"
	say "$(printf '  %-40s %5s %7s %9s %7s %10s %7s %7s %9s %7s' '' '' '' '/batch' '/batch' '/batch' '/batch' '' '/event' '/batch')"
	for b in $D_BATCHES; do
		for m in $D_MEMBERS; do
			for id in $(d_ids "$b" "$m" 0); do
				say "$(printf '  %-40s %5d %7d %9.1f %7.2f %10.0f %7.1f %7.1f %9.4f %7.1f' "${C_LABEL[$id]}" "$b" "$m" \
					"$(echo "${D_WREC[$id]}" | median)" "$(echo "${D_WFPI[$id]}" | median)" \
					"$(echo "${D_WBYTES[$id]}" | median)" "$(echo "${D_ROWS[$id]}" | median)" \
					"$(echo "${D_HOT[$id]}" | median)" "$(echo "${D_WREC_EV[$id]}" | median)" \
					"$(echo "${D_READS[$id]}" | median)")"
			done
		done
	done
}

consume_ratios() {
	local b m id rows wrec verdict
	for b in $D_BATCHES; do
		for m in $D_MEMBERS; do
			ratio "D  poll / PgQ, per consumer, $b x$m" "d_poll_${b}_$m" "d_pgq_${b}_$m" 1.0
		done
	done
	for b in $D_BATCHES; do
		for m in $D_MEMBERS; do
			ratio "D  poll / SKIP LOCKED queue, $b x$m" "d_poll_${b}_$m" "d_skip_${b}_$m" 5.0
		done
	done
	# Writes per batch, not per event: a batch updates the position row of
	# each partition it read (at most the 4 partitions) and nothing per event.
	for b in $D_BATCHES; do
		for m in $D_MEMBERS; do
			id=d_poll_${b}_$m
			[ -n "${D_ROWS[$id]:-}" ] || continue
			rows=$(echo "${D_ROWS[$id]}" | median)
			wrec=$(echo "${D_WREC_EV[$id]}" | median)
			if awk -v r="$rows" -v w="$wrec" 'BEGIN {exit !(r <= 4 && w <= 0.1)}'; then
				verdict=MET
			else
				verdict=MISSED
				missed=$((missed + 1))
			fi
			say "$(printf '  %-44s %6s   target <= %-5s %-7s (WAL records per event %s, target <= 0.1)' \
				"D  poll rows written per batch, $b x$m" "$rows" 4 "$verdict" "$wrec")"
		done
	done
	say "  informational: the explicit poll + commit() form against the one-statement form"
	for b in $D_BATCHES; do
		for m in $D_MEMBERS; do
			ratio "D  poll, commit() / poll(commit), $b x$m" "d_pollc_${b}_$m" "d_poll_${b}_$m" ""
		done
	done
}
