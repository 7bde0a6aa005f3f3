#!/usr/bin/env bash
# Builds netacct_<version>_<arch>.deb from the staged tree (packaging/stage.sh)
# into the directory given. It depends only on libraries every Debian and
# Ubuntu release with glibc >= 2.28 has (read from the ELF files it carries).
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=$1 out=$2
version=$(node -p "require('./package.json').version")
arch=$(dpkg --print-architecture)

# Shared libraries the carried files need, as Debian packages.
depends=()
while read -r need; do
	case $need in
	GLIBC_*) depends=("libc6 (>= ${need#GLIBC_})" "${depends[@]}") ;;
	libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | ld-linux-*.so.2) ;; # libc6
	libstdc++.so.6) depends+=(libstdc++6) ;;
	libatomic.so.1) depends+=(libatomic1) ;;
	libgcc_s.so.1) depends+=(libgcc-s1) ;;
	libelf.so.1) depends+=(libelf1) ;; # Debian 13 and Ubuntu 24.04: provided by libelf1t64
	libz.so.1) depends+=(zlib1g) ;;
	libbpf.so.1) ;; # carried
	*) echo "packaging: $need: which Debian package provides it? (packaging/deb/build.sh)" >&2; exit 1 ;;
	esac
done < <(packaging/elf-needs.sh "$stage")

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp -a "$stage/." "$root/"
mkdir -p "$root/DEBIAN"
echo /etc/netacct/config.json >"$root/DEBIAN/conffiles"
# Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up, whatever the build's filesystem.
installed_kib=$(find "$root" -path "$root/DEBIAN" -prune -o \( -type f -o -type l \) -printf '%s\n' | awk '{ kib += int(($1 + 1023) / 1024) } END { print kib }')
depends_field=$(IFS=,; echo "${depends[*]}" | sed 's/,/, /g')
cat >"$root/DEBIAN/control" <<CONTROL
Package: netacct
Version: $version
Architecture: $arch
Maintainer: netacct developers <netacct@localhost>
Section: admin
Priority: optional
Depends: $depends_field
Suggests: atop, prometheus
Installed-Size: $installed_kib
Description: per-process and per-cgroup TCP/UDP traffic accounting with eBPF
 netacct counts every socket send and receive call and its bytes, per process
 and per cgroup v2, TCP and UDP, IPv4 and IPv6, with BPF programs (the
 kernel's sock tracepoints from Linux 6.3, fexit from Linux 5.12). It serves
 atop -K: atop 2.10 and later exactly as netatop-bpf does, older atops as the
 netatop kernel module and netatopd did, with no module. Also an HTTP API and
 WebSocket streams for scripts, Prometheus metrics and a live web page.
 .
 It carries its own Node.js runtime and libbpf.
CONTROL
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
find "$root/DEBIAN" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/netacct_${version}_${arch}.deb
# One compressor thread: xz's output depends on the thread count.
dpkg-deb --root-owner-group -Zxz --threads-max=1 --build "$root" "$deb" >/dev/null
echo "$deb"
