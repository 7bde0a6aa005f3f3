#!/usr/bin/env bash
# Builds the reference netatop-bpf (github.com/bytedance/netatop-bpf) from its
# public source, for bench/ab.ts to measure beside netacct. Its Makefile
# builds libbpf and bpftool from git submodules; this builds the same program
# against Debian's libbpf and bpftool instead (apt-get install clang llvm
# libbpf-dev bpftool zlib1g-dev libelf-dev).
#
#   bench/netatop-bpf.sh SOURCE OUT
#
# SOURCE: a checkout of the repository (or its files: netatop.bpf.c,
# netatop.c, server.c, deal.c and vmlinux/); OUT: a directory for the
# binary, printed on success. Nothing of its code is in this repository.
set -euo pipefail
src=$(readlink -f "$1")
out=$(mkdir -p "$2" && readlink -f "$2")
for file in netatop.bpf.c netatop.c server.c deal.c netatop.h; do
	[[ -f $src/$file ]] || { echo "bench/netatop-bpf.sh: $src has no $file: is it a netatop-bpf checkout?" >&2; exit 1; }
done
arch=$(uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp "$src"/*.c "$src"/*.h "$build/"
cp "$src/vmlinux/$arch/vmlinux.h" "$build/vmlinux.h"
cd "$build"
clang -g -O2 -target bpf "-D__TARGET_ARCH_$arch" -I. -c netatop.bpf.c -o netatop.bpf.o
llvm-strip -g netatop.bpf.o
bpftool gen skeleton netatop.bpf.o >netatop.skel.h
cc -g -O2 -Wall -I. -o "$out/netatop" netatop.c server.c deal.c -lbpf -lelf -lz
echo "$out/netatop"
