#!/usr/bin/env bash
# Runs a command as root inside a real Debian kernel under QEMU (software
# emulation: this machine's /dev/kvm cannot run guests), with this machine's
# root shared read-only (a tmpfs overlay takes the guest's writes), and bpffs,
# tracefs, cgroup2, proc, sys, dev, /run and /tmp mounted fresh.
#
#   test/vm/kernel.sh prepare SUITE        fetch and unpack SUITE's kernel, build its initramfs
#   test/vm/kernel.sh run SUITE -- CMD...  boot it, run CMD in the current directory, print its
#                                          output, exit with its status
#   test/vm/kernel.sh release SUITE        the prepared kernel's release (uname -r)
#
# SUITE is a Debian suite whose linux-image-amd64 is wanted: bullseye (5.10),
# bookworm (6.1), trixie (6.12). Kernels are fetched with apt from the mirror
# this machine uses, with an apt state of their own (the machine's /etc/apt is
# not touched), and kept in $NETACCT_VM_CACHE (default /var/cache/netacct-vm).
set -euo pipefail

cache=${NETACCT_VM_CACHE:-/var/cache/netacct-vm}
timeout_s=${NETACCT_VM_TIMEOUT:-1200}
# Modules the guest needs to mount the host's root (many are built in: then skipped).
modules=(virtio_pci virtio_console 9pnet_virtio 9p overlay)

need() { # need COMMAND PACKAGE
	command -v "$1" >/dev/null && return
	echo "test/vm: installing $2" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
}

mirror() { # the Debian mirror of this machine's sources
	local uri
	uri=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}' || true)
	[[ -n $uri ]] || uri=$(grep -hoE '^deb +(\[[^]]*\] +)?[^ ]+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $NF}' || true)
	echo "${uri:-http://deb.debian.org/debian}"
}

prepare() {
	local suite=$1 dir=$cache/$1
	[[ -f $dir/ready ]] && return
	need qemu-system-x86_64 qemu-system-x86
	need busybox busybox-static
	need cpio cpio
	need xz xz-utils
	need depmod kmod
	rm -rf "$dir"
	mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/deb"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) $suite main" >"$dir/apt/sources.list"
	local apt=(-o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache" -o Debug::NoLocking=1)
	echo "test/vm: fetching the $suite kernel" >&2
	apt-get "${apt[@]}" update -qq >&2
	local package
	package=$(apt-cache "${apt[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	[[ -n $package ]] || { echo "test/vm: no linux-image package in $suite" >&2; exit 1; }
	(cd "$dir/deb" && apt-get "${apt[@]}" download "$package" >&2)
	dpkg-deb -x "$dir"/deb/*.deb "$dir/image"
	# Newer packages (trixie) ship /usr/lib/modules; depmod here looks in /lib/modules.
	if [[ ! -d $dir/image/lib/modules && -d $dir/image/usr/lib/modules ]]; then
		mkdir -p "$dir/image/lib"
		mv "$dir/image/usr/lib/modules" "$dir/image/lib/modules"
	fi
	local release
	release=$(basename "$(ls -d "$dir"/image/lib/modules/*)")
	cp "$dir/image/boot/vmlinuz-$release" "$dir/vmlinuz"
	build_initramfs "$dir" "$release"
	echo "$release" >"$dir/release"
	rm -rf "$dir/image" "$dir/deb" "$dir/apt"
	touch "$dir/ready"
}

build_initramfs() { # build_initramfs DIR RELEASE
	local dir=$1 release=$2 root
	local moddir=$dir/image/lib/modules/$release
	depmod -b "$dir/image" "$release" # the package leaves modules.dep to its postinst
	root=$(mktemp -d)
	mkdir -p "$root/bin" "$root/modules"
	cp "$(command -v busybox)" "$root/bin/busybox"
	# Each module after the ones it needs, decompressed (busybox insmod reads plain .ko).
	local -A loaded=()
	local order=()
	load() {
		local name=$1 line file dep
		line=$(grep -E "(^|/)${name//_/[_-]}\.ko(\.xz|\.zst)?:" "$moddir/modules.dep" || true)
		[[ -n $line ]] || return 0 # built in
		file=${line%%:*}
		[[ -n ${loaded[$file]:-} ]] && return 0
		loaded[$file]=1
		for dep in ${line#*:}; do load "$(basename "${dep%%.ko*}")"; done
		order+=("$file")
	}
	for module in "${modules[@]}"; do load "$module"; done
	local i=0 file
	for file in "${order[@]}"; do
		i=$((i + 1))
		case $file in
		*.xz) xz -dc "$moddir/$file" >"$root/modules/$(printf %02d $i).ko" ;;
		*.zst) zstd -dqc "$moddir/$file" >"$root/modules/$(printf %02d $i).ko" ;;
		*) cp "$moddir/$file" "$root/modules/$(printf %02d $i).ko" ;;
		esac
	done
	cp "$(dirname "$0")/guest-init.sh" "$root/init"
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$dir/initrd"
	rm -rf "$root"
}

boot() { # boot DIR WORK: one guest run of WORK/command on the kernel in DIR
	timeout "$timeout_s" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 3G -smp 2 \
		-nographic -no-reboot -monitor none -serial "file:$2/console" \
		-kernel "$1/vmlinuz" -initrd "$1/initrd" \
		-append "console=ttyS0 panic=-1 quiet netacct.command=$2/command" \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-device virtio-serial-pci -chardev "file,id=out,path=$2/out" -device virtserialport,chardev=out,name=out \
		>/dev/null 2>&1
}

run() { # run SUITE -- CMD...
	local suite=$1
	shift
	[[ ${1:-} == -- ]] && shift
	prepare "$suite"
	local dir=$cache/$suite work
	# Not under /tmp: the guest mounts a fresh /tmp, and reads the command from the shared root.
	mkdir -p "$cache/runs"
	work=$(mktemp -d "$cache/runs/run-XXXXXX")
	trap 'rm -rf "$work"' EXIT
	{
		printf 'cd %q || exit 125\n' "$PWD"
		# NETACCT_TEST_EMULATED: the guest's CPUs are emulated (TCG), many times slower,
		# and starved further while the host runs other suites: waits are longer there.
		printf 'export PATH=%q HOME=/root CI=%q NETACCT_TEST_ATTACH_MODE=%q NETACCT_TEST_EMULATED=1\n' "$PATH" "${CI:-}" "${NETACCT_TEST_ATTACH_MODE:-}"
		printf '%q ' "$@"
		echo
	} >"$work/command"
	# A guest kernel under TCG very rarely panics while it boots, before the
	# command starts (seen once: an int3 oops in the idle loop of Debian 6.12).
	# That says nothing about netacct, so such a boot is retried; once the
	# guest has said "netacct-vm-start", whatever happens is the command's.
	local status attempt
	for attempt in 1 2 3; do
		status=0
		rm -f "$work/out" "$work/console"
		boot "$dir" "$work" || status=$?
		grep -q '^netacct-vm-start$' "$work/out" 2>/dev/null && break
		echo "test/vm: the $suite guest died before the command started (boot $attempt, qemu exit $status); its console:" >&2
		tail -n 15 "$work/console" >&2
	done
	if ! grep -q '^netacct-vm-exit: ' "$work/out" 2>/dev/null; then
		echo "test/vm: the $suite guest ended without the command's status (qemu exit $status); what the command printed, then its console:" >&2
		tail -n 200 "$work/out" >&2 || true
		tail -n 40 "$work/console" >&2
		exit 124
	fi
	grep -v '^netacct-vm-\(start$\|exit: \)' "$work/out" || true
	exit "$(sed -n 's/^netacct-vm-exit: //p' "$work/out" | tail -n1)"
}

case ${1:-} in
prepare) prepare "$2" ;;
run) shift; run "$@" ;;
release) prepare "$2"; cat "$cache/$2/release" ;;
*) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
