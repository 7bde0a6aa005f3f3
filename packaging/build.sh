#!/usr/bin/env bash
# Builds both packages into the directory given (default: packages/), from one
# staged tree (packaging/stage.sh) and prints their paths:
#   netacct_<version>_<arch>.deb    Debian 11-13, Ubuntu 22.04/24.04
#   netacct-<version>-1.<arch>.rpm  RHEL 9, Fedora, Amazon Linux 2023
# They carry this machine's Node.js (>= package.json's engines) and libbpf, and
# need only glibc >= 2.28, libstdc++, libelf and zlib from the system.
# Reproducible: the same checkout built with the same node, npm packages and
# libbpf gives the same bytes; times are SOURCE_DATE_EPOCH, by default the
# last commit's.
# Needs: node and npm, dpkg-dev, rpm, libbpf1, binutils (apt-get install npm dpkg-dev rpm libbpf1 binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in dpkg-deb rpmbuild readelf npm; do
	command -v "$tool" >/dev/null || { echo "packaging: $tool is missing (apt-get install dpkg-dev rpm binutils npm)" >&2; exit 1; }
done
out=$(realpath -m "${1:-packages}")
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || stat -c %Y package.json)}
export TZ=UTC
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packaging/stage.sh "$work/stage"
mkdir -p "$out"
packaging/deb/build.sh "$work/stage" "$out"
packaging/rpm/build.sh "$work/stage" "$out"
