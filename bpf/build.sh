#!/usr/bin/env bash
# Rebuilds the committed BPF objects from their sources, or with --check
# verifies that each committed object is exactly what its source compiles to
# (CI runs this). Objects: bpf/netacct.bpf.o and bpf/netatop-sockopt.bpf.o (the
# daemon's) and bench/baselines.bpf.o (reference programs for the benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."

sources=(bpf/netacct.bpf.c bpf/netatop-sockopt.bpf.c bench/baselines.bpf.c)
multiarch=$(gcc -dumpmachine) # <linux/types.h> needs <asm/types.h> from the multiarch dir

build() { # build SOURCE OUTPUT
	# BTF line info records the source's absolute path: map the checkout's
	# directory away, and strip DWARF (BTF stays: libbpf needs it), so that the
	# object does not depend on where the checkout lives.
	clang -O2 -g -mcpu=v3 -target bpf -Wall -Werror -I"/usr/include/$multiarch" \
		-fdebug-prefix-map="$PWD"=. -c "$1" -o "$2"
	llvm-strip -g "$2"
}

status=0
for source in "${sources[@]}"; do
	object=${source%.c}.o
	if [[ ${1:-} == --check ]]; then
		fresh=$(mktemp --suffix=.bpf.o)
		build "$source" "$fresh"
		if cmp -s "$fresh" "$object"; then
			echo "$object matches $source"
		else
			echo "$object does not match $source: run 'npm run build:bpf' and commit the object" >&2
			status=1
		fi
		rm -f "$fresh"
	else
		build "$source" "$object"
		echo "built $object"
	fi
done
exit $status
