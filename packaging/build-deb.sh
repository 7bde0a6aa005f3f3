#!/usr/bin/env bash
# Builds netacct_<version>_<arch>.deb (dpkg-deb) into the directory given
# (default: deb/): the compiled daemon and its production dependencies in
# /usr/lib/netacct, the committed BPF object, the web page, /usr/bin/netacct,
# the systemd unit, a default /etc/netacct/config.json (a conffile), the man
# page, and the Prometheus and Grafana examples. Depends on Debian's nodejs
# (>= 20.19, as package.json's engines says) and libbpf1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-deb}")

version=$(node -p "require('./package.json').version")
node_range=$(node -p "require('./package.json').engines.node.replace('>=', '')")
arch=$(dpkg --print-architecture) # koffi and msgpackr-extract ship native code
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# Compiled apart from dist/, which running daemons (tests) may be loading.
npx tsc -p tsconfig.json --outDir "$stage/build"
lib=$stage/usr/lib/netacct
mkdir -p "$lib/dist" "$lib/bin" "$lib/bpf"
cp -r "$stage/build/daemon" "$stage/build/protocol" "$stage/build/cli" "$lib/dist/"
rm -rf "$stage/build"
cp bin/netacct.js "$lib/bin/"
cp bpf/netacct.bpf.o bpf/netatop-sockopt.bpf.o "$lib/bpf/"
cp -r web "$lib/"
cp package.json package-lock.json "$lib/"
(cd "$lib" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

mkdir -p "$stage/usr/bin"
ln -s ../lib/netacct/bin/netacct.js "$stage/usr/bin/netacct" # relative: works under any root
install -D -m 0644 packaging/netacct.service "$stage/lib/systemd/system/netacct.service"
# The default configuration is the daemon's own defaults (one source of truth),
# without the BPF object paths: the package's objects are found next to the daemon.
mkdir -p "$stage/etc/netacct"
node --input-type=module -e "
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
printf 'netacct\nLicense: GPL-2.0-only\nOn Debian systems the license is in /usr/share/common-licenses/GPL-2.\n' >"$doc/copyright"

mkdir -p "$stage/DEBIAN"
echo /etc/netacct/config.json >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: netacct
Version: $version
Architecture: $arch
Maintainer: netacct developers <netacct@localhost>
Section: admin
Priority: optional
Depends: nodejs (>= $node_range), libbpf1
Recommends: atop (>= 2.10)
Suggests: prometheus
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Description: per-process and per-cgroup TCP/UDP traffic accounting with eBPF
 netacct counts every socket send and receive call and its bytes, per process
 and per cgroup v2, TCP and UDP, IPv4 and IPv6, with BPF programs (the
 kernel's sock tracepoints from Linux 6.3, fexit from Linux 5.12). It serves
 atop -K: atop 2.10 and later exactly as netatop-bpf does, older atops as the
 netatop kernel module and netatopd did, with no module. Also an HTTP API and
 WebSocket streams for scripts, Prometheus metrics and a live web page.
CONTROL
cat >"$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable netacct.service
	systemctl restart netacct.service || echo "netacct: the service did not start; see: journalctl -u netacct" >&2
fi
# atop's own configuration is atop's: say what to change, never change it.
if [ "$1" = configure ] && [ -f /etc/default/atop ] && ! grep -q '^LOGOPTS=.*-K' /etc/default/atop; then
	echo "netacct: atop's daily logs record network counters only with -K: set LOGOPTS=\"-K\" in /etc/default/atop, then systemctl restart atop" >&2
fi
SCRIPT
cat >"$stage/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop netacct.service || true
fi
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl disable netacct.service || true
fi
SCRIPT
cat >"$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
	rm -rf /sys/fs/bpf/netacct # the pinned counters
fi
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

mkdir -p "$out"
deb=$out/netacct_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
