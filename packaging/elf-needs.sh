#!/usr/bin/env bash
# What the ELF files under the directory given need from the system, for the
# packages' dependencies: one line per shared library they name (NEEDED), and
# "GLIBC_<version>" for the highest glibc symbol version any of them uses.
# Read from the files themselves (binutils' readelf): dpkg-shlibdeps would ask
# for glibc 2.34 for a node built against 2.28, because it links libdl and
# libpthread, which Debian's symbols files date from their merge into libc.
set -euo pipefail
files=$(find "$1" -type f \( -name '*.so*' -o -name '*.node' -o -perm -u+x \) -exec sh -c 'head -c4 "$1" | grep -q "ELF" && echo "$1"' _ {} \;)
for file in $files; do
	readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
done | sort -u
for file in $files; do
	readelf -W --dyn-syms "$file" | grep -o 'GLIBC_[0-9.]*' || true
done | sort -uV | tail -1
