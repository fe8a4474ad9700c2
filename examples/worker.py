#!/usr/bin/python3
"""An external pg_eventbus worker.

Leases partitions of a consumer group, processes each event outside the
database, commits what it finished and gives failures back with nack() so
they are retried later and, after the group's max_attempts, dead-lettered.
Several copies with different member names share the partitions; if one
dies, its leases run out and another copy takes over from the last commit.

    python3 worker.py "dbname=app" billing orders worker-1

Processing here just prints each event as a JSON line; replace handle().
For the tests, --fail-key makes every event with that key fail,
--delay simulates that many seconds of work per event, and --idle-exit
ends the worker after that many seconds without events.
"""

import argparse
import json
import signal
import sys
import time

import psycopg

LEASE = "30 seconds"


class Failed(Exception):
    pass


def handle(event, fail_key, delay):
    if delay:
        time.sleep(delay)
    if fail_key is not None and event["key"] == fail_key:
        raise Failed("refusing key %s" % event["key"])
    print(json.dumps(event, default=str), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("member")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--fail-key")
    parser.add_argument("--delay", type=float, default=0)
    parser.add_argument("--idle-exit", type=float)
    args = parser.parse_args()

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        idle_since = time.monotonic()
        while not stopping:
            rows = conn.execute(
                "SELECT partition, position, key, value, attempt"
                "  FROM eventbus.poll(%s, %s, %s, member => %s, lease => %s)",
                (args.group, args.topic, args.batch, args.member, LEASE),
            ).fetchall()
            if not rows:
                if args.idle_exit and time.monotonic() - idle_since > args.idle_exit:
                    break
                time.sleep(0.2)
                continue
            idle_since = time.monotonic()

            done = {}
            for partition, position, key, value, attempt in rows:
                event = {"partition": partition, "position": position,
                         "key": key, "value": value, "attempt": attempt}
                try:
                    handle(event, args.fail_key, args.delay)
                except Failed as e:
                    conn.execute(
                        "SELECT eventbus.nack(%s, %s, %s, %s, retry_after => '0.2 seconds',"
                        " reason => %s, member => %s)",
                        (args.group, args.topic, partition, position, str(e), args.member),
                    )
                done[partition] = max(position, done.get(partition, -1))

            # A nacked event stays scheduled for retry although the commit
            # covers its position.
            for partition, position in done.items():
                try:
                    conn.execute(
                        "SELECT eventbus.commit(%s, %s, %s, %s, member => %s)",
                        (args.group, args.topic, partition, position, args.member),
                    )
                except psycopg.errors.ObjectInUse:
                    # Our lease ran out and another member took over: it
                    # gets these events again.
                    pass

        conn.execute("SELECT eventbus.release(%s, %s, %s)",
                     (args.group, args.topic, args.member))
    return 0


if __name__ == "__main__":
    sys.exit(main())
