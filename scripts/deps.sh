#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need,
# for the PostgreSQL major in PG_MAJOR (15 by default).  Does nothing when
# they are all present, so it is safe to run every time.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}

PACKAGES=(
	make gcc
	"postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
	librdkafka-dev kcat
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	python3 python3-psycopg
)
# Building the Debian package and its clean test chroot (scripts/package.sh),
# done from the host only.
[ -z "${EB_CHROOT:-}" ] && PACKAGES+=(dpkg-dev debhelper postgresql-server-dev-all debootstrap)
# pgTAP for this major; see install_pgtap_sql for a major without it.
PGTAP="postgresql-$PG_MAJOR-pgtap"
PGTAP_CONTROL="/usr/share/postgresql/$PG_MAJOR/extension/pgtap.control"
# Installed where the suite has them: the benchmarks' peer, and the
# exporter and promtool of test/t/110_exporter.pl (skipped without them).
OPTIONAL=(
	"postgresql-$PG_MAJOR-pgq3"
	prometheus-postgres-exporter prometheus
)

not_installed() {
	local pkg
	for pkg in "$@"; do
		[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || echo "$pkg"
	done
}
has_candidate() {
	local policy
	policy=$(apt-cache policy "$1" 2>/dev/null)
	[[ $policy == *"Candidate: "[!\(]* ]]
}

# pgTAP is SQL only, and a release candidate of PostgreSQL may not have its
# own package yet: then the SQL files of the newest older major's package
# are installed for this major.
install_pgtap_sql() {
	local n dir
	for ((n = PG_MAJOR - 1; n >= 15; n--)); do
		has_candidate "postgresql-$n-pgtap" || continue
		echo "No $PGTAP: installing the pgTAP SQL files of postgresql-$n-pgtap for PostgreSQL $PG_MAJOR"
		dir=$(mktemp -d)
		(cd "$dir" && apt-get download -q "postgresql-$n-pgtap" >/dev/null) &&
			dpkg-deb -x "$dir"/*.deb "$dir/root" &&
			$SUDO cp "$dir/root/usr/share/postgresql/$n/extension/"pgtap* "$(dirname "$PGTAP_CONTROL")/"
		rm -rf "$dir"
		[ -f "$PGTAP_CONTROL" ] && return 0
	done
	echo "No pgTAP package for PostgreSQL $PG_MAJOR or an older major" >&2
	return 1
}

mapfile -t missing < <(not_installed "${PACKAGES[@]}")
mapfile -t optional < <(not_installed "${OPTIONAL[@]}")
pgtap_ok=false
[ -f "$PGTAP_CONTROL" ] && pgtap_ok=true
if [ ${#missing[@]} -eq 0 ] && $pgtap_ok; then
	# Optional packages that this suite does not have are not missing.
	wanted=()
	for pkg in "${optional[@]}"; do has_candidate "$pkg" && wanted+=("$pkg"); done
	[ ${#wanted[@]} -eq 0 ] && exit 0
	optional=("${wanted[@]}")
fi

SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
for pkg in "${optional[@]}"; do has_candidate "$pkg" && missing+=("$pkg"); done
pgtap_sql=false
if ! $pgtap_ok; then
	if has_candidate "$PGTAP"; then missing+=("$PGTAP"); else pgtap_sql=true; fi
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "Installing missing packages: ${missing[*]}"
	$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if $pgtap_sql; then
	install_pgtap_sql
fi
