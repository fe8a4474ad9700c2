#!/usr/bin/env bash
# PostgreSQL majors that the host's Debian does not package, each in a
# minimal chroot of a newer Debian suite built with debootstrap from the
# host's own Debian mirror:
#
#   17  trixie                           chroot-trixie
#   18  sid                              chroot-sid
#   19  sid with experimental (19~rc1)   chroot-sid-experimental
#
# and, to test the Debian package, a clean chroot per major (the host's
# bookworm for 15) that has PostgreSQL and the package test's dependencies
# but nothing built from this tree (chroot-<suite>-clean).
#
#   scripts/chroot.sh ensure MAJOR         build the chroot unless it is there
#   scripts/chroot.sh path MAJOR           print the chroot's directory
#   scripts/chroot.sh run MAJOR CMD...     run CMD inside, in the tree
#   scripts/chroot.sh shell MAJOR          an interactive shell inside
#   scripts/chroot.sh make MAJOR [ARGS]    make ARGS in a fresh copy of the
#                                          tree inside (a compile check)
#   scripts/chroot.sh test MAJOR [SUITES]  the test suites in a fresh copy
#   scripts/chroot.sh package MAJOR DEB... installs the packages into a
#                                          throwaway copy of the clean chroot
#                                          and runs debian/tests/installcheck
#   scripts/chroot.sh clean MAJOR          remove the chroots of MAJOR
#
# Chroots live outside the clone, in $EB_CHROOT_DIR (/var/cache/pg_eventbus
# by default), so that every clone and CI run reuse them; one that is
# missing is built, into a temporary directory renamed when complete, so an
# interrupted build is simply started again.  Commands run as root in a
# private mount and PID namespace: the tree is bind-mounted at its own path,
# /proc, /dev and a fresh /dev/shm are mounted, and all of it (with any
# process left inside) goes away when the command ends, however it ends.
# /tmp is the chroot's own directory, so the test lock and the work
# directories of test runs inside are separate from the host's.  Needs
# root (or sudo), debootstrap, unshare and chroot.
set -euo pipefail

EB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHROOT_DIR=${EB_CHROOT_DIR:-/var/cache/pg_eventbus}
READY=.pg_eventbus-ready

die() { echo "chroot.sh: $*" >&2; exit 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$@"
fi

# suite_of MAJOR: sets SUITE (debootstrap's), EXTRA (additional suite for
# apt, pinned to PostgreSQL's packages) and NAME (the chroot's).
suite_of() {
	EXTRA=
	case "$1" in
		15) SUITE=bookworm ;;
		17) SUITE=trixie ;;
		18) SUITE=sid ;;
		19) SUITE=sid EXTRA=experimental ;;
		*) die "no chroot for PostgreSQL $1 (majors with a chroot: 15 17 18 19)" ;;
	esac
	NAME=chroot-$SUITE${EXTRA:+-$EXTRA}
}

# The host's Debian mirror: the first apt source of the archive proper.
mirror() {
	if [ -n "${EB_DEBIAN_MIRROR:-}" ]; then
		echo "$EB_DEBIAN_MIRROR"
		return
	fi
	local m
	m=$({
		sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n'
		sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
	} | grep -E '^https?://.*/debian/?$' | head -n 1)
	[ -n "$m" ] || die "no Debian mirror in /etc/apt/sources.list*: set EB_DEBIAN_MIRROR"
	echo "${m%/}"
}

# in_root ROOT [VAR=value...] CMD...: runs CMD chrooted into ROOT, in a
# private mount and PID namespace.  The tree is at its own path and is the
# working directory.
in_root() {
	local root=$1
	shift
	cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
	mkdir -p "$root$EB_ROOT"
	# shellcheck disable=SC2016
	unshare --mount --pid --fork --propagation private -- bash -c '
		set -e
		root=$1 tree=$2
		shift 2
		mount -t proc proc "$root/proc"
		mount --rbind /dev "$root/dev"
		mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
		mount --bind "$tree" "$root$tree"
		# An init that waits: the command is its child, so ^C reaches it.
		chroot "$root" /usr/bin/env -i \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
			sh -c "cd \"\$0\" && exec env \"\$@\"" "$tree" "$@" &
		wait $!
	' in_root "$root" "$EB_ROOT" EB_CHROOT="$NAME" "$@"
}

# Environment passed to builds and tests inside.
pass_env() {
	local v
	for v in PG_CFLAGS EB_CFLAGS EB_TAP_TESTS EB_RELAY_DELIVERY EB_RELAY_DELIVERY_DEFAULT CI; do
		[ -n "${!v+x}" ] && printf '%s=%s\n' "$v" "${!v}"
	done
	return 0
}

# build MAJOR [clean]: the chroot for MAJOR, with what building and testing
# need (scripts/deps.sh), or a clean one with PostgreSQL and what the
# package test needs (debian/tests/control) only.
build() {
	local major=$1 kind=${2:-dev}
	suite_of "$major"
	[ "$kind" = clean ] && NAME=$NAME-clean
	local root=$CHROOT_DIR/$NAME tmp=$CHROOT_DIR/$NAME.tmp
	[ -f "$root/$READY" ] && return 0
	mkdir -p "$CHROOT_DIR"
	exec 8>"$CHROOT_DIR/$NAME.lock"
	flock 8
	if [ -f "$root/$READY" ]; then exec 8>&-; return 0; fi
	command -v debootstrap >/dev/null || {
		say "Installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null ||
			{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
	}
	local m start t1 t2
	m=$(mirror)
	say "Building the $NAME chroot for PostgreSQL $major in $root (from $m)"
	start=$(date +%s)
	# A half-built chroot of an interrupted run: its mounts were private.
	rm -rf --one-file-system "$tmp" "$root"
	unshare --mount --propagation private -- \
		debootstrap --variant=minbase "$SUITE" "$tmp" "$m" >"$CHROOT_DIR/$NAME.debootstrap.log" 2>&1 || {
		tail -n 30 "$CHROOT_DIR/$NAME.debootstrap.log" >&2
		die "debootstrap failed (log: $CHROOT_DIR/$NAME.debootstrap.log)"
	}
	t1=$(date +%s)
	if [ "$SUITE" = "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" ]; then
		# The host's own suite: the host's sources (with its updates and
		# security suites: packages built here depend on their versions).
		cp /etc/apt/sources.list "$tmp/etc/apt/sources.list" 2>/dev/null || : >"$tmp/etc/apt/sources.list"
		cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
			"$tmp/etc/apt/sources.list.d/" 2>/dev/null || true
	else
		{
			echo "deb $m $SUITE main"
			[ -n "$EXTRA" ] && echo "deb $m $EXTRA main"
		} >"$tmp/etc/apt/sources.list"
	fi
	cat >"$tmp/etc/apt/apt.conf.d/90pg_eventbus" <<-EOF
		// Snapshots of sid and experimental may be past their Valid-Until.
		Acquire::Check-Valid-Until "false";
		APT::Install-Recommends "false";
		Dpkg::Options { "--force-confdef"; "--force-confold"; };
	EOF
	if [ -n "$EXTRA" ]; then
		# Only PostgreSQL's own packages come from $EXTRA.
		cat >"$tmp/etc/apt/preferences.d/pg_eventbus" <<-EOF
			Package: postgresql* libpq* libecpg* libpgtypes*
			Pin: release a=$EXTRA
			Pin-Priority: 500
		EOF
	fi
	# Packages start no services in a chroot.
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 755 "$tmp/usr/sbin/policy-rc.d"
	[ -s "$tmp/etc/hosts" ] || cp /etc/hosts "$tmp/etc/hosts"
	if [ "$kind" = clean ]; then
		say "Installing PostgreSQL $major and the package test's dependencies inside"
		in_root "$tmp" apt-get update -q >/dev/null
		in_root "$tmp" DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q "postgresql-$major" postgresql-server-dev-all make >/dev/null
	else
		say "Installing PostgreSQL $major and the test dependencies inside"
		in_root "$tmp" PG_MAJOR="$major" DEBIAN_FRONTEND=noninteractive "$EB_ROOT/scripts/deps.sh"
	fi
	in_root "$tmp" apt-get clean
	t2=$(date +%s)
	date -u +%FT%TZ >"$tmp/$READY"
	echo "debootstrap $((t1 - start))s, packages $((t2 - t1))s" >>"$tmp/$READY"
	mv "$tmp" "$root"
	exec 8>&-
	say "Chroot $NAME ready in $((t2 - start))s (debootstrap $((t1 - start))s, packages $((t2 - t1))s)"
}

# A fresh copy of the tree inside the chroot, built from clean, so objects
# of one major never meet another's (the tree's own are left alone).
copy_script='
set -e
src=/var/tmp/pg_eventbus-src
rm -rf "$src"
mkdir -p "$src"
tar --exclude=./.git -cf - . | tar -C "$src" -xf -
cd "$src"
PG_MAJOR=$PG scripts/deps.sh
make -s PG=$PG clean >/dev/null 2>&1 || true
'

cmd=${1:-}
[ $# -ge 2 ] || die "usage: $0 ensure|path|run|shell|make|test|clean MAJOR [...]"
major=$2
shift 2
suite_of "$major"
root=$CHROOT_DIR/$NAME

case "$cmd" in
	ensure) build "$major" ;;
	path) echo "$root" ;;
	run)
		build "$major"
		in_root "$root" PG_MAJOR="$major" "$@"
		;;
	shell)
		build "$major"
		in_root "$root" PG_MAJOR="$major" bash
		;;
	make)
		build "$major"
		mapfile -t env < <(pass_env)
		in_root "$root" PG_MAJOR="$major" PG="$major" "${env[@]}" \
			bash -c "$copy_script"'make PG=$PG "$@"' make "$@"
		;;
	test)
		build "$major"
		mapfile -t env < <(pass_env)
		say "PostgreSQL $major tests in the $NAME chroot (a kept work directory /tmp/X is $root/tmp/X here)"
		# One run per chroot at a time (the copy of the tree is shared).
		in_root "$root" PG_MAJOR="$major" PG="$major" "${env[@]}" \
			bash -c 'exec 7>/tmp/pg_eventbus-chroot.lock; flock 7;'"$copy_script"'scripts/test.sh "$@"' test "$@"
		;;
	package)
		[ $# -ge 1 ] || die "usage: $0 package MAJOR DEB..."
		build "$major" clean
		root=$CHROOT_DIR/$NAME
		run=$(mktemp -d "$CHROOT_DIR/$NAME.run.XXXXXX")
		trap 'rm -rf --one-file-system "$run"' EXIT
		say "Installing $(basename -a "$@" | tr '\n' ' ')into a copy of the clean $NAME chroot"
		cp -a "$root/." "$run/"
		mkdir -p "$run/var/tmp/debs"
		cp "$@" "$run/var/tmp/debs/"
		# The suite runs in a copy of the tree, as a user without root's
		# rights (pg_virtualenv's throwaway cluster), against the installed
		# files.
		in_root "$run" DEBIAN_FRONTEND=noninteractive bash -c '
			set -e
			apt-get update -q >/dev/null
			apt-get install -y -q /var/tmp/debs/*.deb >/dev/null
			dpkg-query -W "postgresql-*-eventbus"
			src=/var/tmp/pg_eventbus-src
			mkdir -p "$src"
			tar --exclude=./.git -cf - debian sql expected Makefile pg_eventbus.control |
				tar -C "$src" -xf -
			# as the postgres user (the package made it), whose name is the
			# bootstrap superuser the expected outputs show, as in make test
			chown -R postgres "$src"
			cd "$src"
			su postgres -s /bin/sh -c debian/tests/installcheck'
		;;
	clean)
		# both the chroot and the clean one of this major
		for n in "$NAME" "$NAME-clean"; do
			exec 8>"$CHROOT_DIR/$n.lock"
			flock 8
			rm -rf --one-file-system "${CHROOT_DIR:?}/$n" "$CHROOT_DIR/$n.tmp"
			exec 8>&-
		done
		;;
	*) die "unknown command: $cmd" ;;
esac
