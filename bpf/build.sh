#!/usr/bin/env bash
# Rebuilds bpf/netacct.bpf.o from its source, or with --check verifies that the
# committed object is exactly what its source compiles to (CI runs this).
set -euo pipefail
cd "$(dirname "$0")"

multiarch=$(gcc -dumpmachine) # BPF programs include <linux/types.h>, which needs <asm/types.h>
build() {
	# Relative source path and stripped DWARF: the object does not depend on
	# where the checkout lives. -g is needed for BTF, which libbpf requires.
	clang -O2 -g -mcpu=v3 -target bpf -Wall -Werror -I"/usr/include/$multiarch" \
		-c netacct.bpf.c -o "$1"
	llvm-strip -g "$1"
}

if [[ ${1:-} == --check ]]; then
	fresh=$(mktemp --suffix=.bpf.o)
	trap 'rm -f "$fresh"' EXIT
	build "$fresh"
	if ! cmp -s "$fresh" netacct.bpf.o; then
		echo "bpf/netacct.bpf.o does not match bpf/netacct.bpf.c: run 'npm run build:bpf' and commit the object" >&2
		exit 1
	fi
	echo "bpf/netacct.bpf.o matches its source"
else
	build netacct.bpf.o
	echo "built bpf/netacct.bpf.o"
fi
