#!/usr/bin/env bash
# Builds netacct's container image from the project's own .deb, from scratch
# (no base image, nothing pulled): the package's files (its Node.js, libbpf,
# BPF objects), the few system libraries they need taken from this machine
# (glibc, libstdc++, libelf, zlib: what packaging/elf-needs.sh lists, with
# what those need in turn), and /etc's passwd and group. Then imports it as
# localhost/netacct:<version> with Podman (or Docker) and saves it as an OCI
# archive beside the packages, to push to a registry:
#   skopeo copy oci-archive:packages/netacct-image-<version>.tar docker://registry.example/netacct:<version>
# Usage: packaging/container/build.sh [out-dir (default packages/)] [.deb (default: built now)]
# Needs: what packaging/build.sh needs, and podman or docker.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:-packages}")
deb=${2:-}
engine=$(command -v podman || command -v docker || true)
[[ -n $engine ]] || { echo "container: podman or docker is needed to import the image (apt-get install podman)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z $deb ]]; then
	# The .deb alone (packaging/build.sh makes the .rpm too), from the same staged tree.
	export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || stat -c %Y package.json)} TZ=UTC
	packaging/stage.sh "$work/stage"
	mkdir -p "$work/packages"
	packaging/deb/build.sh "$work/stage" "$work/packages" >/dev/null
	deb=$(ls "$work"/packages/netacct_*.deb)
fi
version=$(dpkg-deb -f "$deb" Version)
root=$work/root
dpkg-deb -x "$deb" "$root"

# The system libraries the package's ELF files need, as this machine resolves
# them (ldd: with what those need in turn), and the dynamic loader.
elves=$(find "$root/usr/lib/netacct" -type f \( -name '*.so*' -o -name '*.node' -o -perm -u+x \) -exec sh -c 'head -c4 "$1" | grep -q ELF && echo "$1"' _ {} \;)
for elf in $elves; do
	LD_LIBRARY_PATH=$root/usr/lib/netacct/lib ldd "$elf" | awk '/=> \// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }'
done | sort -u | grep -v "^$root" | while read -r library; do
	mkdir -p "$root$(dirname "$library")"
	cp -L "$library" "$root$library"
done

mkdir -p "$root/etc" "$root/tmp" "$root/run" "$root/var/lib/netacct" "$root/sys" "$root/proc"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

tar --sort=name --mtime="@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}" --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/rootfs.tar" .
image=localhost/netacct:$version
# The package's own entry point needs a shell; the image runs its Node.js directly.
"$engine" import \
	--change 'ENTRYPOINT ["/usr/lib/netacct/node/bin/node", "/usr/lib/netacct/bin/netacct.js"]' \
	--change 'CMD ["daemon"]' \
	--change 'ENV PATH=/usr/lib/netacct/node/bin:/usr/bin:/bin' \
	--change "LABEL org.opencontainers.image.title=netacct org.opencontainers.image.version=$version" \
	"$work/rootfs.tar" "$image" >/dev/null
mkdir -p "$out"
rm -f "$out/netacct-image-$version.tar"
if [[ $(basename "$engine") == podman ]]; then
	"$engine" save --format oci-archive -o "$out/netacct-image-$version.tar" "$image" >/dev/null
else
	"$engine" save -o "$out/netacct-image-$version.tar" "$image"
fi
echo "$image"
echo "$out/netacct-image-$version.tar"
