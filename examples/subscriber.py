#!/usr/bin/python3
"""A pg_eventbus subscriber that sleeps until events arrive.

LISTEN "eventbus.<topic>" wakes it shortly after a transaction that
published to the topic commits; it then polls the consumer group until
nothing is left, so nothing waits for the next notification.  The poll
commits in the same statement (one transaction per batch).

    python3 subscriber.py "dbname=app" billing orders

For the tests, --exit-after makes it stop after that many seconds without
events.
"""

import argparse
import json
import select
import sys
import time

import psycopg
import psycopg.sql


def drain(conn, group, topic, batch):
    """Poll until the group has nothing more; return how many events."""
    total = 0
    while True:
        rows = conn.execute(
            "SELECT partition, position, key, value"
            "  FROM eventbus.poll(%s, %s, %s, commit => true)",
            (group, topic, batch)).fetchall()
        for partition, position, key, value in rows:
            print(json.dumps({"partition": partition, "position": position,
                              "key": key, "value": value}), flush=True)
        total += len(rows)
        if len(rows) < batch:
            return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--exit-after", type=float)
    args = parser.parse_args()

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        channel = "eventbus." + args.topic
        conn.execute("LISTEN %s" % psycopg.sql.Identifier(channel).as_string(conn))
        # Notifications are read with the replies to our queries; one read
        # during a drain means a commit may have come after that drain's
        # snapshot, so drain again.
        woken = [True]                  # events committed before LISTEN
        conn.add_notify_handler(lambda n: woken.__setitem__(0, True))
        idle_since = time.monotonic()
        while True:
            if woken[0]:
                woken[0] = False
                # poll after wake: one notification may stand for many commits
                if drain(conn, args.group, args.topic, args.batch) > 0:
                    idle_since = time.monotonic()
                continue
            if args.exit_after and time.monotonic() - idle_since > args.exit_after:
                return 0
            ready, _, _ = select.select([conn.fileno()], [], [], 1.0)
            if ready:
                conn.execute("SELECT 1")    # reads the notification
            else:
                woken[0] = True             # a safety net: drain once a second


if __name__ == "__main__":
    sys.exit(main())
