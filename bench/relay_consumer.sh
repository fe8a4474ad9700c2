#!/usr/bin/env bash
# The Kafka consumer of bench/relay.sh's latency run:
#
#   relay_consumer.sh BOOTSTRAP TOPIC FETCH_WAIT_MS
#
# Reads TOPIC from its end with kcat (isolation.level=read_committed: only
# what committed Kafka transactions hold, so the time measured is
# commit-to-visible) and prints, for every message, its eventbus-event-id
# header and the time it arrived here (seconds since the epoch, the clock
# PostgreSQL's timestamps use), separated by a tab.
# FETCH_WAIT_MS is how long the broker may hold a fetch that finds nothing
# new (fetch.wait.max.ms): the measurement includes up to that much.
set -o pipefail
kcat -C -b "$1" -t "$2" -o end -u -q -X isolation.level=read_committed -f '%h\n' -X fetch.wait.max.ms="$3" 2>/dev/null |
	perl -MTime::HiRes=time -ne 'BEGIN { $| = 1 }
		my $t = time;
		printf "%s\t%.6f\n", $1, $t if /eventbus-event-id=([0-9a-f-]{36})/'
