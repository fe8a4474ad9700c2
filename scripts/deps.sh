#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need.
# Does nothing when they are all present, so it is safe to run every time.
set -euo pipefail

PACKAGES=(
	make gcc
	postgresql-15 postgresql-server-dev-15
	librdkafka-dev kcat
	postgresql-15-pgtap pgtap libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	postgresql-15-pgq3
	python3 python3-psycopg
)

missing=()
for pkg in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$pkg")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing missing packages: ${missing[*]}"
SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
