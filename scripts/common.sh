# Shared by the set-up scripts (deps, test, demo, bench): paths, the
# unprivileged user that runs servers, and throwaway clusters.
#
# initdb refuses to run as root, so when invoked as root the servers and
# test programs run as the "postgres" system user (created by the Debian
# packages); a normal user runs them as themselves and installs with sudo.

EB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The PostgreSQL major to build and test against (make test PG=N sets it).
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PGBIN/pg_config

if [ "$(id -u)" -eq 0 ]; then
	EB_USER=postgres
	SUDO=
else
	EB_USER=$(id -un)
	SUDO=sudo
fi

eb_say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Runs a command as the unprivileged user, with PostgreSQL's binaries first
# in PATH.  Extra environment: pass "VAR=value" words before the command.
as_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$EB_USER" -- env PATH="$PGBIN:$PATH" "$@"
	else
		env PATH="$PGBIN:$PATH" "$@"
	fi
}

# Builds the extension and the test helper, and installs the extension
# unless the installed files are already these.
eb_build() {
	eb_say "Building pg_eventbus for PostgreSQL $PG_MAJOR"
	make -C "$EB_ROOT" -s PG="$PG_MAJOR" PG_CONFIG="$PG_CONFIG" all test/mock_kafka
	local version libdir sharedir
	version=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$EB_ROOT/pg_eventbus.control")
	libdir=$($PG_CONFIG --pkglibdir)
	sharedir=$($PG_CONFIG --sharedir)/extension
	if cmp -s "$EB_ROOT/pg_eventbus.so" "$libdir/pg_eventbus.so" &&
		cmp -s "$EB_ROOT/pg_eventbus--$version.sql" "$sharedir/pg_eventbus--$version.sql" &&
		cmp -s "$EB_ROOT/pg_eventbus.control" "$sharedir/pg_eventbus.control"; then
		return 0
	fi
	if [ -n "$SUDO" ] && ! [ -w "$libdir" ]; then
		$SUDO make -C "$EB_ROOT" -s PG="$PG_MAJOR" PG_CONFIG="$PG_CONFIG" install
	else
		make -C "$EB_ROOT" -s PG="$PG_MAJOR" PG_CONFIG="$PG_CONFIG" install
	fi
}

# A fresh directory owned by the unprivileged user, unique per run.
eb_workdir() {
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/pg_eventbus-$1.XXXXXX")
	chmod 755 "$dir"
	[ "$(id -u)" -eq 0 ] && chown "$EB_USER" "$dir"
	echo "$dir"
}

# eb_cluster_start DIR PORT [postgresql.conf lines...]: a throwaway server
# listening only on a Unix socket in DIR.
eb_cluster_start() {
	local dir=$1 port=$2
	shift 2
	as_user initdb -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log"; return 1; }
	{
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'pg_eventbus'"
		echo "wal_level = logical"
		echo "fsync = off"
		for line in "$@"; do echo "$line"; done
	} | as_user tee -a "$dir/data/postgresql.conf" >/dev/null
	as_user pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
		{ cat "$dir/server.log"; return 1; }
}

eb_cluster_stop() {
	local dir=$1
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_user pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
}

# A free TCP port on loopback (for the mock Kafka cluster and servers).
eb_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
