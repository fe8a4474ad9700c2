#!/usr/bin/env bash
# make test: installs what is missing, builds, and runs every test suite:
# pg_regress (sql/, expected/), the security suite (test/security/: attacks
# by an unprivileged role), isolation specs (test/specs/), TAP tests
# (test/t/) and pgTAP (test/pgtap/).  Each suite starts its own servers.
# The run fails if any server log shows a backend terminated by a signal,
# a failed assertion (TRAP) or a PANIC.
#
#   scripts/test.sh [regress] [security] [isolation] [tap] [pgtap] [package]
#                                               run some suites
#   EB_TAP_TESTS="test/t/020_crash.pl" scripts/test.sh tap  some TAP files
set -euo pipefail
. "$(dirname "$0")/common.sh"

suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
	suites=(regress security isolation tap pgtap)
	# The Debian package is built and tested from the host (its test needs
	# a chroot of its own), for the host's major.
	[ -z "${EB_CHROOT:-}" ] && suites+=(package)
fi

# The suites use the installed extension: one run at a time per machine.
# flock holds the lock in its own process (-o: the servers the suites start
# do not inherit it, so a server left behind cannot keep it).
lock="${TMPDIR:-/tmp}/pg_eventbus-test.lock"
if [ "${EB_TEST_LOCKED:-}" != "$lock" ]; then
	export EB_TEST_LOCKED="$lock"
	exec flock -o "$lock" "$0" "$@"
fi

eb_build

WORK=$(eb_workdir test)
PGXS_DIR=$(dirname "$(dirname "$(dirname "$($PG_CONFIG --pgxs)")")")
SRC="$WORK/src"
mkdir -p "$SRC" "$WORK/bin"
cp -r "$EB_ROOT/sql" "$EB_ROOT/expected" "$EB_ROOT/test" "$EB_ROOT/examples" "$EB_ROOT/monitoring" "$SRC/"
cp "$EB_ROOT/README.md" "$SRC/"
cp "$EB_ROOT/test/mock_kafka" "$WORK/bin/"
[ "$(id -u)" -eq 0 ] && chown -R "$EB_USER" "$WORK"

PGTAP_DIR="$WORK/pgtap"
cleanup() { eb_cluster_stop "$PGTAP_DIR"; }
trap cleanup EXIT

failed=()

run_regress() {
	eb_say "pg_regress"
	local tests
	tests=$(cd "$SRC/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | grep -v -- '--' | sort)
	# shellcheck disable=SC2086
	as_user "$PGXS_DIR/src/test/regress/pg_regress" \
		--temp-instance="$WORK/regress/instance" \
		--temp-config="$SRC/test/regress.conf" \
		--inputdir="$SRC" --outputdir="$WORK/regress" \
		--bindir="$PGBIN" --dbname=contrib_regression \
		$tests || {
		[ -f "$WORK/regress/regression.diffs" ] && cat "$WORK/regress/regression.diffs"
		return 1
	}
}

run_security() {
	eb_say "security suite (attacks by an unprivileged role)"
	local tests
	tests=$(cd "$SRC/test/security/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | sort)
	# shellcheck disable=SC2086
	as_user "$PGXS_DIR/src/test/regress/pg_regress" \
		--temp-instance="$WORK/security/instance" \
		--temp-config="$SRC/test/regress.conf" \
		--inputdir="$SRC/test/security" --outputdir="$WORK/security" \
		--bindir="$PGBIN" --dbname=security_regression \
		$tests || {
		[ -f "$WORK/security/regression.diffs" ] && cat "$WORK/security/regression.diffs"
		return 1
	}
}

run_isolation() {
	eb_say "isolation specs"
	local specs
	specs=$(cd "$SRC/test/specs" && ls ./*.spec | sed 's|^\./||; s|\.spec$||' | sort)
	# shellcheck disable=SC2086
	as_user "$PGXS_DIR/src/test/isolation/pg_isolation_regress" \
		--temp-instance="$WORK/isolation/instance" \
		--temp-config="$SRC/test/regress.conf" \
		--inputdir="$SRC/test" --outputdir="$WORK/isolation" \
		--bindir="$PGBIN" --dbname=isolation_regression \
		$specs || {
		[ -f "$WORK/isolation/regression.diffs" ] && cat "$WORK/isolation/regression.diffs"
		return 1
	}
}

run_tap() {
	eb_say "TAP tests"
	local files=${EB_TAP_TESTS:-}
	[ -z "$files" ] && files=$(cd "$SRC" && ls test/t/*.pl)
	mkdir -p "$WORK/tap"
	[ "$(id -u)" -eq 0 ] && chown "$EB_USER" "$WORK/tap"
	# shellcheck disable=SC2086
	(cd "$SRC" && as_user TESTDIR="$WORK/tap" PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
		EB_MOCK_KAFKA="$WORK/bin/mock_kafka" EB_SRC="$SRC" \
		prove -I "$PGXS_DIR/src/test/perl" -I "$SRC/test/t" --timer ${EB_PROVE_FLAGS:-} $files) || {
		echo "TAP logs: $WORK/tap/tmp_check/log"
		return 1
	}
}

run_package() {
	eb_say "Debian package: built, installed into a clean chroot, installcheck there"
	"$EB_ROOT/scripts/package.sh" "$WORK/package"
}

run_pgtap() {
	eb_say "pgTAP"
	mkdir -p "$PGTAP_DIR"
	[ "$(id -u)" -eq 0 ] && chown "$EB_USER" "$PGTAP_DIR"
	local port
	port=$(eb_free_port)
	eb_cluster_start "$PGTAP_DIR" "$port"
	as_user psql -X -q -h "$PGTAP_DIR" -p "$port" -U postgres -d postgres \
		-c "CREATE EXTENSION pgtap; CREATE EXTENSION pg_eventbus;"
	local rc=0
	(cd "$SRC" && as_user pg_prove -h "$PGTAP_DIR" -p "$port" -U postgres -d postgres \
		test/pgtap/*.sql) || rc=1
	eb_cluster_stop "$PGTAP_DIR"
	return $rc
}

for suite in "${suites[@]}"; do
	case "$suite" in
		regress | security | isolation | tap | pgtap | package) "run_$suite" || failed+=("$suite") ;;
		*) echo "unknown suite: $suite" >&2; exit 2 ;;
	esac
done

# A crash anywhere fails the run, even when every assertion passed.
eb_say "server logs: no backend killed by a signal, no TRAP, no PANIC"
crashes=$(find "$WORK" -name '*.log' -type f -print0 2>/dev/null |
	xargs -0 -r grep -HnE 'terminated by signal|TRAP:|PANIC:' 2>/dev/null || true)
if [ -n "$crashes" ]; then
	echo "$crashes"
	failed+=(server-logs)
fi

if [ ${#failed[@]} -gt 0 ]; then
	eb_say "FAILED: ${failed[*]} (servers' logs and outputs are kept in $WORK)"
	exit 1
fi
# Nothing to look at after a clean run.
[ -n "${EB_KEEP_WORK:-}" ] || rm -rf "$WORK"
eb_say "All test suites passed: ${suites[*]}"
