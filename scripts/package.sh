#!/usr/bin/env bash
# Checks that the packaging metadata (debian/changelog, META.json for PGXN)
# carries the extension's version, builds the Debian package
# postgresql-<major>-eventbus from this tree
# (debian/, pg_buildext), installs it into a clean chroot (PostgreSQL and
# the package test's dependencies only: scripts/chroot.sh) and runs the
# regression suite there against the installed files
# (debian/tests/installcheck, with the library preloaded).
#
#   scripts/package.sh [OUTDIR]   the .deb files are left in OUTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"

out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/pg_eventbus-package.XXXXXX")}
mkdir -p "$out"
build=$(mktemp -d "${TMPDIR:-/tmp}/pg_eventbus-debbuild.XXXXXX")
trap 'rm -rf "$build"' EXIT

# The package's version is the extension's.
version=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$EB_ROOT/pg_eventbus.control")
deb_version=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$EB_ROOT/debian/changelog")
if [ "$version" != "$deb_version" ]; then
	echo "debian/changelog is at $deb_version, pg_eventbus.control at $version: add a debian/changelog entry" >&2
	exit 1
fi
# So is the PGXN distribution's (META.json, spec 1.0.0: its required keys).
python3 - "$EB_ROOT/META.json" "$version" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
version = sys.argv[2]
missing = [k for k in ("name", "abstract", "version", "maintainer", "license",
                       "provides", "meta-spec") if k not in meta]
if missing:
    sys.exit("META.json lacks " + ", ".join(missing))
versions = {meta["version"]} | {p.get("version") for p in meta["provides"].values()}
if versions != {version}:
    sys.exit("META.json gives version(s) %s, pg_eventbus.control %s" % (sorted(versions), version))
PY

eb_say "Building the Debian package $version"
mkdir -p "$build/pg-eventbus"
(cd "$EB_ROOT" && tar --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
	--exclude=./pg_eventbus--"$version".sql --exclude=./.pg_built_for --exclude=./test/mock_kafka \
	-cf - .) | tar -C "$build/pg-eventbus" -xf -
(
	cd "$build/pg-eventbus"
	# debian/control lists a binary package per supported major installed here.
	pg_buildext updatecontrol >/dev/null
	DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -b -us -uc >"$build/build.log" 2>&1
) || {
	tail -n 40 "$build/build.log"
	exit 1
}
debs=()
for f in "$build"/postgresql-*-eventbus_"$version"_*.deb; do
	cp "$f" "$out/"
	debs+=("$out/$(basename "$f")")
done
[ ${#debs[@]} -gt 0 ] || { echo "no package was built" >&2; exit 1; }
contents=$(dpkg-deb -c "${debs[0]}")
[[ $contents == *"pg_eventbus--$version.sql"* ]] ||
	{ echo "${debs[0]} lacks the install script" >&2; exit 1; }

eb_say "Installing ${debs[*]##*/} into a clean chroot and running installcheck"
"$EB_ROOT/scripts/chroot.sh" package "$PG_MAJOR" "${debs[@]}"
