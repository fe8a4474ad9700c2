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
	"postgresql-$PG_MAJOR-pgtap" pgtap libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	python3 python3-psycopg
)
# Only the benchmarks need these: installed where the suite has them.
OPTIONAL=(
	"postgresql-$PG_MAJOR-pgq3"
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

mapfile -t missing < <(not_installed "${PACKAGES[@]}")
mapfile -t optional < <(not_installed "${OPTIONAL[@]}")
if [ ${#missing[@]} -eq 0 ]; then
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
echo "Installing missing packages: ${missing[*]}"
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
