#!/bin/busybox sh
# The guest's /init (test/vm/kernel.sh builds it into the initramfs): mounts
# the host's root read-only under a tmpfs overlay, the kernel filesystems the
# daemon needs, runs the command named on the kernel command line as root,
# and sends its output and status back over the virtio serial port "out".
/bin/busybox mkdir -p /proc /sys /dev /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in /modules/*.ko; do
	[ -e "$module" ] && insmod "$module"
done
mkdir -p /host /layer /root-fs
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /host
mount -t tmpfs -o size=1G tmpfs /layer
mkdir -p /layer/upper /layer/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/layer/upper,workdir=/layer/work /root-fs
for fs in "proc /proc" "sysfs /sys" "devtmpfs /dev" "tmpfs /run" "tmpfs /tmp" "devpts /dev/pts"; do
	set -- $fs
	mkdir -p "/root-fs$2"
	mount -t "$1" "$1" "/root-fs$2"
done
chmod 1777 /root-fs/tmp
mount -t cgroup2 cgroup2 /root-fs/sys/fs/cgroup
mount -t bpf bpf /root-fs/sys/fs/bpf
mount -t tracefs tracefs /root-fs/sys/kernel/tracing
ip link set lo up

port=
for name in /sys/class/virtio-ports/*/name; do
	[ "$(cat "$name")" = out ] && port=/dev/$(basename "$(dirname "$name")")
done
command=$(sed -n 's/.*netacct\.command=\([^ ]*\).*/\1/p' /proc/cmdline)
echo netacct-vm-start >"$port"
chroot /root-fs /bin/sh "$command" >>"$port" 2>&1
echo "netacct-vm-exit: $?" >>"$port"
sync
poweroff -f
