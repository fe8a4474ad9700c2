#!/usr/bin/python3
"""Subscribers, producers and latency analysis for bench/wakeups.sh.

Modes:

  subscribers   Subscribers that run while pgbench produces (the throughput
                runs), until a stop file appears.  --kind eventbus: LISTEN
                subscribers that poll after every wake-up, and sessions
                looping on eventbus.wait() then polling, one consumer group
                each.  --kind naive: LISTEN subscribers of the naive
                baseline's NOTIFY, reading the plain table after every
                wake-up.  For comparison, --kind notify-only: LISTEN
                sessions that only read the notifications, and --kind
                timer: sessions that poll every --period seconds, without
                wake-ups.  Writes their counters as JSON to --stats and a
                summary line to stdout.

  latency       One latency run: producers commit one event per transaction
                at a steady rate for --seconds; subscriber processes (mode
                lat-sub) record when they are woken and what they poll;
                then every event's commit is matched with its wake-up.
                Writes the samples to <--out>.<subscriber>.lat and prints a
                summary per subscriber.

  report        Pooled percentiles of the samples of several latency runs,
                with the targets.

How commit-to-wake latency is measured (docs: docs/benchmarks.md, workload F):

  Every process reads the same clock, CLOCK_MONOTONIC (time.monotonic_ns).
  A producer records, per event, the time just before it sends COMMIT
  ("sent") and just after COMMIT returns ("returned").  Latencies are
  measured from "returned": the commit is then certainly visible to
  others.  It became visible somewhat earlier, between "sent" and
  "returned" (that span is mostly the WAL flush; its percentiles are
  reported too).

  LISTEN "eventbus.<topic>": the wake-up of an event is the first
  notification the subscriber reads at or after the event's COMMIT
  returned.  Any notification read after the commit makes the subscriber
  poll, and that poll sees the event, whichever commit the notification
  was sent for.

  eventbus.wait(): the wake-up of an event is the return of the first
  wait() call that returns at or after the event's COMMIT returned.  An
  event that committed while the subscriber was polling and that one of
  those polls already returned needs no wake-up: it is counted as "caught
  by a poll" and left out of the percentiles.

  Naive baseline (a NOTIFY in every producer transaction): the wake-up of
  an event is the notification whose payload is its position.  The NOTIFY
  is delivered by the producer's own commit, so it can arrive a little
  before the producer's COMMIT returns: such samples are slightly negative.
"""

import argparse
import bisect
import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time

import psycopg

NAIVE_CHANNEL = "wakebench_naive"
NAIVE_INSERT = (
    "WITH i AS ("
    " INSERT INTO wakebench.naive (partition, key, value)"
    " VALUES (%s, %s, %s::jsonb) RETURNING partition, position)"
    " SELECT partition, position, pg_notify('" + NAIVE_CHANNEL + "', position::text) FROM i")
PUBLISH = "SELECT partition, position FROM eventbus.publish(%s, %s::jsonb, key => %s)"
POLL = "SELECT partition, position, key, value::text FROM eventbus.poll(%s, %s, %s, commit => true)"
NAIVE_DRAIN = "SELECT pos, k, v FROM wakebench.naive_drain(%s, %s)"


def now_ns():
    return time.monotonic_ns()


def connect(dsn, autocommit=True):
    return psycopg.connect(dsn, autocommit=autocommit, application_name="wakeups_driver")


def channel_sql(topic):
    return 'LISTEN "eventbus.%s"' % topic.replace('"', '""')


def ensure_group(conn, group, topic):
    """A group of its own for one subscriber, moved to the end of the topic."""
    exists = conn.execute(
        "SELECT 1 FROM eventbus.consumer_group g JOIN eventbus.topic t USING (topic_id)"
        " WHERE g.group_name = %s AND t.topic = %s", (group, topic)).fetchone()
    if exists:
        conn.execute("SELECT eventbus.seek(%s, %s, 'latest')", (group, topic))
    else:
        conn.execute("SELECT eventbus.create_group(%s, %s, 'latest')", (group, topic))


def ensure_naive_offset(conn, sub):
    conn.execute(
        "INSERT INTO wakebench.naive_offset VALUES (%s, (SELECT coalesce(max(position), 0) FROM wakebench.naive))"
        " ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position", (sub,))


def read_notifies(conn):
    """Reads what arrived on an idle connection; notifications go to the handlers."""
    pgconn = conn.pgconn
    pgconn.consume_input()
    while True:
        n = pgconn.notifies()
        if n is None:
            return
        pgconn.notify_handler(n)


class Subscriber:
    """One subscriber session: LISTEN then poll, or wait() then poll.

    role: "listen" (LISTEN "eventbus.<topic>", poll the group after each
    wake-up), "wait" (loop on eventbus.wait(), poll after it returns true),
    "naive" (LISTEN the naive channel, read the plain table after each
    wake-up); for comparison, "notify-only" (LISTEN "eventbus.<topic>" and
    read the notifications, never poll) and "timer" (no wake-ups: poll,
    sleep `period` seconds, poll again).  With record=True, keeps the time of
    every wake-up and delivery for the latency analysis.
    """

    def __init__(self, dsn, role, topic, name, batch, stop, record=False, period=0.01, sync=None):
        self.dsn, self.role, self.topic, self.name = dsn, role, topic, name
        self.batch, self.stop, self.record, self.period = batch, stop, record, period
        self.wakes = 0          # notifications read, or wait() calls that returned true
        self.polls = 0          # poll statements
        self.events = 0         # events (rows) they returned
        self.notes = []         # (time, payload) of each notification
        self.wake_times = []    # wait(): time each call returned true
        self.delivered = []     # (partition, position, time, wake index)
        self.error = None
        self.conn = connect(dsn)
        if sync is not None:
            self.conn.execute("SELECT set_config('synchronous_commit', %s, false)", (sync,))
        if role == "naive":
            ensure_naive_offset(self.conn, name)
        elif role != "notify-only":
            ensure_group(self.conn, name, topic)

    def start_listening(self):
        if self.role in ("listen", "notify-only"):
            self.conn.execute(channel_sql(self.topic))
        elif self.role == "naive":
            self.conn.execute("LISTEN " + NAIVE_CHANNEL)
        if self.role in ("listen", "naive", "notify-only"):
            self.woken = True           # drain once at start
            self.conn.add_notify_handler(self.on_notify)

    def on_notify(self, n):
        self.wakes += 1
        self.woken = True
        if self.record:
            self.notes.append((now_ns(), n.payload))

    def drain(self, wake):
        """Polls until a batch comes back short (poll after wake)."""
        while True:
            if self.role == "naive":
                rows = self.conn.execute(NAIVE_DRAIN, (self.name, self.batch)).fetchall()
            else:
                rows = self.conn.execute(POLL, (self.name, self.topic, self.batch)).fetchall()
            t = now_ns()
            self.polls += 1
            self.events += len(rows)
            if self.record and self.role != "naive":
                for r in rows:
                    self.delivered.append((r[0], r[1], t, wake))
            if len(rows) < self.batch:
                return

    def run(self):
        try:
            if self.role == "wait":
                self.run_wait()
            elif self.role == "timer":
                self.run_timer()
            else:
                self.run_listen()
        except Exception as e:      # reported in the stats; the run fails
            self.error = "%s: %s" % (type(e).__name__, e)

    def run_listen(self):
        fd = self.conn.fileno()
        idle_since = time.monotonic()
        while not self.stop.is_set():
            if self.woken and self.role != "notify-only":
                self.woken = False
                self.drain(len(self.notes) - 1)
                idle_since = time.monotonic()
                continue
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                read_notifies(self.conn)
            elif time.monotonic() - idle_since > 1.0:
                self.woken = True       # the examples' safety net: drain once a second
                idle_since = time.monotonic()

    def run_wait(self):
        self.drain(-1)
        while not self.stop.is_set():
            woke = self.conn.execute(
                "SELECT eventbus.wait(%s, %s, '0.5 seconds')", (self.name, self.topic)).fetchone()[0]
            if woke:
                t = now_ns()
                self.wakes += 1
                if self.record:
                    self.wake_times.append(t)
                self.drain(len(self.wake_times) - 1)

    def run_timer(self):
        while not self.stop.is_set():
            self.drain(-1)
            time.sleep(self.period)

    def stats(self):
        return {"name": self.name, "role": self.role, "wakes": self.wakes,
                "polls": self.polls, "events": self.events, "error": self.error}


def stop_event_from_file(path, max_seconds):
    """An Event set when the stop file appears (or after max_seconds)."""
    stop = threading.Event()
    deadline = time.monotonic() + max_seconds

    def watch():
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    return stop


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


# --- mode subscribers --------------------------------------------------------

def cmd_subscribers(args):
    stop = stop_event_from_file(args.stop, args.max_seconds)
    subs = []
    n = args.listeners + args.waiters
    if args.kind == "eventbus":
        for i in range(args.listeners):
            subs.append(Subscriber(args.dsn, "listen", args.topic, "tp_listen_%d" % (i + 1), args.batch, stop))
        for i in range(args.waiters):
            subs.append(Subscriber(args.dsn, "wait", args.topic, "tp_wait_%d" % (i + 1), args.batch, stop))
    else:
        # the same number of sessions, of one kind
        role = {"naive": "naive", "notify-only": "notify-only", "timer": "timer"}[args.kind]
        for i in range(n):
            subs.append(Subscriber(args.dsn, role, args.topic, "tp_%s_%d" % (role.replace("-", "_"), i + 1),
                                   args.batch, stop, period=args.period))
    for s in subs:
        s.start_listening()
    threads = [threading.Thread(target=s.run) for s in subs]
    for t in threads:
        t.start()
    write_atomically(args.ready, "%d\n" % os.getpid())
    for t in threads:
        t.join()
    write_atomically(args.stats, json.dumps([s.stats() for s in subs]) + "\n")
    # one line for the console: per kind of subscriber, the range over them
    parts = []
    for role, label in (("listen", "LISTEN"), ("wait", "wait()"), ("naive", "naive LISTEN"),
                        ("notify-only", "LISTEN (no poll)"), ("timer", "timer")):
        group = [s for s in subs if s.role == role]
        if not group:
            continue

        def rng(attr):
            vals = [getattr(s, attr) for s in group]
            return "%d" % vals[0] if min(vals) == max(vals) else "%d-%d" % (min(vals), max(vals))
        parts.append("%d %s: %s wake-ups, %s polls, %s events each" % (
            len(group), label, rng("wakes"), rng("polls"), rng("events")))
    print("; ".join(parts))
    for s in subs:
        if s.error:
            print("subscriber %s failed: %s" % (s.name, s.error), file=sys.stderr)
    return 1 if any(s.error for s in subs) else 0


# --- mode lat-sub: one subscriber of a latency run, in its own process -----

def cmd_lat_sub(args):
    stop = stop_event_from_file(args.stop, args.max_seconds)
    s = Subscriber(args.dsn, args.role, args.topic, args.name, args.batch, stop, record=True,
                   sync=args.sync)
    s.start_listening()
    write_atomically(args.ready, "ready\n")
    s.run()
    out = {"stats": s.stats(), "notes": s.notes, "wake_times": s.wake_times,
           "delivered": s.delivered}
    write_atomically(args.records, json.dumps(out))
    return 1 if s.error else 0


# --- mode latency --------------------------------------------------------------

def event_value(rng):
    k = rng.randint(1, 1000)
    value = '{"order_id": %d, "customer": "customer-%d", "amount": 12.5, "items": [1,2,3]}' % (
        rng.randint(1, 1000000000), k)
    return k, "customer-%d" % k, value


def producer(dsn, kind, topic, k, nprod, rate, t0, t_end, out, errors):
    """Commits events i = k, k + nprod, ... at t0 + i / rate: one event per transaction."""
    rng = random.Random(k)
    try:
        conn = connect(dsn, autocommit=False)
        i = k
        while True:
            sched = t0 + int(i * 1e9 / rate)
            if sched >= t_end:
                break
            delay = sched - now_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            kk, key, value = event_value(rng)
            if kind == "eventbus":
                p, pos = conn.execute(PUBLISH, (topic, value, key)).fetchone()
            else:
                p, pos = conn.execute(NAIVE_INSERT, (kk % 8, key, value)).fetchone()[:2]
            sent = now_ns()
            conn.commit()
            returned = now_ns()
            out.append((p, pos, sched, sent, returned))
            i += nprod
        conn.close()
    except Exception as e:
        errors.append("producer %d: %s: %s" % (k, type(e).__name__, e))


def pct(sorted_vals, q):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_vals:
        return float("nan")
    r = max(1, math.ceil(q / 100.0 * len(sorted_vals)))
    return sorted_vals[r - 1]


def analyse_listen(events, rec):
    """LISTEN "eventbus.<topic>": first notification read at or after COMMIT returned."""
    notes = sorted(rec["notes"])
    times = [t for t, _ in notes]
    samples, missing = [], 0
    for p, pos, sched, sent, ret in events:
        j = bisect.bisect_left(times, ret)
        if j == len(times):
            missing += 1
            continue
        samples.append(((times[j] - ret) / 1e6, (times[j] - sent) / 1e6))
    return samples, {"missing": missing}


def analyse_wait(events, rec):
    """wait(): first wait() return at or after COMMIT returned, unless a poll got the event first."""
    wakes = sorted(rec["wake_times"])
    got = {(p, pos): t for p, pos, t, _ in rec["delivered"]}
    samples, missing, caught = [], 0, 0
    for p, pos, sched, sent, ret in events:
        d = got.get((p, pos))
        if d is None:
            missing += 1
            continue
        j = bisect.bisect_left(wakes, ret)
        if j == len(wakes) or d < wakes[j]:
            caught += 1
            continue
        samples.append(((wakes[j] - ret) / 1e6, (wakes[j] - sent) / 1e6))
    return samples, {"missing": missing, "caught_by_poll": caught}


def analyse_naive(events, rec):
    """Naive NOTIFY per transaction: the notification with the event's position."""
    first = {}
    for t, payload in rec["notes"]:
        pos = int(payload)
        if pos not in first:
            first[pos] = t
    samples, missing = [], 0
    for p, pos, sched, sent, ret in events:
        t = first.get(pos)
        if t is None:
            missing += 1
            continue
        samples.append(((t - ret) / 1e6, (t - sent) / 1e6))
    return samples, {"missing": missing, "before_commit_returned": sum(1 for s in samples if s[0] < 0)}


def in_hand(events, rec):
    """Commit returned to the poll that returned the event (information)."""
    got = {(p, pos): t for p, pos, t, _ in rec["delivered"]}
    return sorted((got[(p, pos)] - ret) / 1e6 for p, pos, _, _, ret in events if (p, pos) in got)


def cmd_latency(args):
    me = os.path.abspath(__file__)
    if args.kind == "eventbus":
        subs = [("listen", "lat_listen"), ("wait", "lat_wait")]
    else:
        subs = [("naive", "lat_naive")]
    stop_file = args.out + ".stop"
    procs = []
    # the groups first, one after the other: create_group() also creates the
    # topic's dead-letter topic, which two sessions cannot both do at once
    with connect(args.dsn) as conn:
        for role, name in subs:
            if role != "naive":
                ensure_group(conn, name, args.topic)
    try:
        for role, name in subs:
            base = "%s.%s" % (args.out, role)
            cmd = [sys.executable, me, "lat-sub", "--dsn", args.dsn, "--role", role,
                   "--topic", args.topic, "--name", name, "--batch", str(args.batch),
                   "--ready", base + ".ready", "--stop", stop_file, "--records", base + ".json",
                   "--sync", args.sub_sync,
                   "--max-seconds", str(args.seconds + 60)]
            procs.append((role, base, subprocess.Popen(cmd)))
        deadline = time.monotonic() + 30
        for role, base, p in procs:
            while not os.path.exists(base + ".ready"):
                if p.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("latency: subscriber %s did not start" % role)
                time.sleep(0.02)

        sys.setswitchinterval(0.0005)   # producer threads: time stamps without GIL delays
        events, errors = [], []
        t0 = now_ns() + 200 * 1000 * 1000
        t_end = t0 + int(args.seconds * 1e9)
        # The producers go on for a short tail that is not measured: a
        # LISTEN subscriber's wake-up for an event is a notification read
        # after its commit, so the last measured events need later ones.
        t_tail = t_end + int(args.tail * 1e9)
        threads = [threading.Thread(target=producer,
                                    args=(args.dsn, args.kind, args.topic, k, args.producers,
                                          args.rate, t0, t_tail, events, errors))
                   for k in range(args.producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise SystemExit("latency: " + "; ".join(errors))
        time.sleep(args.grace)          # let the last wake-ups arrive
    finally:
        with open(stop_file, "w"):
            pass
        for role, base, p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    events = sorted((e for e in events if e[2] < t_end), key=lambda e: e[4])
    span = (events[-1][4] - events[0][4]) / 1e9 if len(events) > 1 else 0
    commit = sorted((e[4] - e[3]) / 1e6 for e in events)
    with open(args.out + ".commit", "w") as f:
        f.write("".join("%.3f\n" % c for c in commit))
    lag = sorted(max(0, e[3] - e[2]) / 1e6 for e in events)  # COMMIT sent after its schedule
    summary = {"kind": args.kind, "events": len(events),
               "rate": round((len(events) - 1) / span, 1) if span else 0,
               "commit_p50": pct(commit, 50), "commit_p99": pct(commit, 99),
               "sched_lag_p99": pct(lag, 99), "subscribers": {}}
    failed = False
    for role, base, p in procs:
        if p.returncode != 0 or not os.path.exists(base + ".json"):
            print("latency: subscriber %s failed (exit %s)" % (role, p.returncode), file=sys.stderr)
            failed = True
            continue
        with open(base + ".json") as f:
            rec = json.load(f)
        if rec["stats"]["error"]:
            print("latency: subscriber %s: %s" % (role, rec["stats"]["error"]), file=sys.stderr)
            failed = True
        analyse = {"listen": analyse_listen, "wait": analyse_wait, "naive": analyse_naive}[role]
        samples, extra = analyse(events, rec)
        with open("%s.%s.lat" % (args.out, role), "w") as f:
            f.write("".join("%.3f %.3f\n" % (a, b) for a, b in samples))
        ret = sorted(s[0] for s in samples)
        s = {"n": len(samples), "p50": pct(ret, 50), "p99": pct(ret, 99),
             "max": ret[-1] if ret else float("nan"),
             "wakes": sum(1 for t in ([n[0] for n in rec["notes"]] + rec["wake_times"]) if t0 <= t < t_end),
             "wakes_total": rec["stats"]["wakes"], "polls": rec["stats"]["polls"]}
        s.update(extra)
        if role != "naive":
            hand = in_hand(events, rec)
            s["in_hand_p50"], s["in_hand_p99"] = pct(hand, 50), pct(hand, 99)
            with open("%s.%s.hand" % (args.out, role), "w") as f:
                f.write("".join("%.3f\n" % h for h in hand))
        summary["subscribers"][role] = s
        os.unlink(base + ".json")
    with open(args.out + ".summary.json", "w") as f:
        json.dump(summary, f)
    # one line for the console
    line = "%-8s %7.1f tx/s, COMMIT p50/p99 %.1f/%.1f ms" % (
        args.kind, summary["rate"], summary["commit_p50"], summary["commit_p99"])
    for role, s in summary["subscribers"].items():
        line += " | %s p50/p99 %.1f/%.1f ms, %d wake-ups" % (
            {"listen": "LISTEN", "wait": "wait()", "naive": "LISTEN"}[role], s["p50"], s["p99"], s["wakes"])
        if s.get("missing"):
            line += ", %d MISSING" % s["missing"]
    print(line)
    if summary["sched_lag_p99"] > 1000.0 / args.rate * args.producers:
        print("note: slow commits held the producers back: p99 %.1f ms behind their schedule" %
              summary["sched_lag_p99"])
    return 1 if failed else 0


# --- mode report ---------------------------------------------------------------

LABELS = {
    "listen": 'LISTEN "eventbus.<topic>" (coalesced)',
    "wait": "eventbus.wait(), then poll",
    "naive": "naive: NOTIFY in every producer tx",
}


def read_column(fn, col=0):
    with open(fn) as f:
        return [float(line.split()[col]) for line in f if line.strip()]


def cmd_report(args):
    """Pooled percentiles over the runs' samples; per-run p99; targets."""
    runs = []
    for prefix in args.runs:
        with open(prefix + ".summary.json") as f:
            runs.append((prefix, json.load(f)))
    missed = 0
    out = ["  %-38s %7s %7s %7s %7s  %s" % ("subscriber", "events", "p50 ms", "p99 ms", "max ms", "p99 per run")]
    info = ["  %-38s %9s %9s %-16s %s" % (
        "subscriber", "wake-ups", "per event", "in hand p50/p99", "not in the percentiles, remarks")]
    verdicts = []
    for role in ("listen", "wait", "naive"):
        mine = [(p, s) for p, s in runs if role in s["subscribers"]]
        if not mine:
            continue
        ret, hand, per_run = [], [], []
        wakes = events = missing = caught = early = 0
        for prefix, s in mine:
            run = read_column("%s.%s.lat" % (prefix, role), 0)
            ret += run
            per_run.append("%.1f" % pct(sorted(run), 99))
            if os.path.exists("%s.%s.hand" % (prefix, role)):
                hand += read_column("%s.%s.hand" % (prefix, role))
            sub = s["subscribers"][role]
            wakes += sub["wakes"]
            events += s["events"]
            missing += sub.get("missing", 0)
            caught += sub.get("caught_by_poll", 0)
            early += sub.get("before_commit_returned", 0)
        ret.sort()
        hand.sort()
        p99 = pct(ret, 99)
        out.append("  %-38s %7d %7.2f %7.2f %7.2f  %s" % (
            LABELS[role], len(ret), pct(ret, 50), p99, ret[-1] if ret else float("nan"), ", ".join(per_run)))
        notes = []
        if missing:
            notes.append("%d events never woke it (MISSING)" % missing)
        if caught:
            notes.append("%d caught by a poll before a wake-up" % caught)
        if early:
            notes.append("%d woken before COMMIT returned (negative)" % early)
        info.append("  %-38s %9d %9.2f %-16s %s" % (
            LABELS[role], wakes, wakes / events if events else 0,
            "%.2f / %.2f" % (pct(hand, 50), pct(hand, 99)) if hand else "-",
            "; ".join(notes) if notes else "-"))
        if role in ("listen", "wait"):
            ok = p99 < args.target_ms and not missing
            missed += 0 if ok else 1
            verdicts.append("  %-44s %6.2f   target < %-5s %-7s rounds: %s%s" % (
                "p99 commit-to-wake, " + ("LISTEN" if role == "listen" else "wait()") + " (ms)",
                p99, "%g" % args.target_ms, "MET" if ok else "MISSED", " ".join(per_run),
                " (%d events missing)" % missing if missing else ""))
    print("\n".join(out))
    print("")
    print("\n".join(info))
    for kind in ("eventbus", "naive"):
        mine = [(p, s) for p, s in runs if s["kind"] == kind]
        if not mine:
            continue
        commit = sorted(c for p, s in mine for c in read_column(p + ".commit"))
        print("  producers, %-8s rate %s tx/s; COMMIT sent to returned p50 %.2f, p99 %.2f ms" % (
            kind, "/".join("%.0f" % s["rate"] for p, s in mine), pct(commit, 50), pct(commit, 99)))
    if verdicts:
        print("")
        print("\n".join(verdicts))
    if args.missed_file:
        with open(args.missed_file, "w") as f:
            f.write("%d\n" % missed)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="mode", required=True)

    s = sp.add_parser("subscribers")
    s.add_argument("--dsn", required=True)
    s.add_argument("--kind", choices=["eventbus", "naive", "notify-only", "timer"], required=True)
    s.add_argument("--topic", default="wake_tp")
    s.add_argument("--period", type=float, default=0.01, help="timer: seconds between drains")
    s.add_argument("--listeners", type=int, default=4)
    s.add_argument("--waiters", type=int, default=2)
    s.add_argument("--batch", type=int, default=1000)
    s.add_argument("--ready", required=True)
    s.add_argument("--stop", required=True)
    s.add_argument("--stats", required=True)
    s.add_argument("--max-seconds", type=float, default=3600)

    s = sp.add_parser("lat-sub")
    s.add_argument("--dsn", required=True)
    s.add_argument("--role", choices=["listen", "wait", "naive"], required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--batch", type=int, default=100)
    s.add_argument("--ready", required=True)
    s.add_argument("--stop", required=True)
    s.add_argument("--records", required=True)
    s.add_argument("--sync", choices=["on", "off"], help="synchronous_commit of the subscriber's polls")
    s.add_argument("--max-seconds", type=float, default=3600)

    s = sp.add_parser("latency")
    s.add_argument("--dsn", required=True)
    s.add_argument("--kind", choices=["eventbus", "naive"], required=True)
    s.add_argument("--topic", default="wake_lat")
    s.add_argument("--rate", type=float, default=200)
    s.add_argument("--seconds", type=float, default=20)
    s.add_argument("--producers", type=int, default=4)
    s.add_argument("--batch", type=int, default=100)
    s.add_argument("--grace", type=float, default=1.5, help="seconds to wait for the last wake-ups")
    s.add_argument("--tail", type=float, default=0.5, help="seconds of unmeasured commits after the run")
    s.add_argument("--sub-sync", choices=["on", "off"], default="off",
                   help="synchronous_commit of the subscribers' polls (see docs/benchmarks.md, workload F)")
    s.add_argument("--out", required=True)

    s = sp.add_parser("report")
    s.add_argument("--target-ms", type=float, default=20)
    s.add_argument("--missed-file")
    s.add_argument("runs", nargs="*", help="--out prefixes of latency runs")

    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return {"subscribers": cmd_subscribers, "lat-sub": cmd_lat_sub,
            "latency": cmd_latency, "report": cmd_report}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
