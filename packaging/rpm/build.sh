#!/usr/bin/env bash
# Builds netacct-<version>-1.<arch>.rpm from the staged tree (packaging/stage.sh)
# into the directory given, with rpmbuild (Debian's rpm package). Reproducible:
# build time and file times are SOURCE_DATE_EPOCH, the build host is fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=$1 out=$2
version=$(node -p "require('./package.json').version")
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
rpmbuild -bb --quiet packaging/rpm/netacct.spec \
	--define "_topdir $top" \
	--define "_dbpath $top/db" \
	--define "_rpmdir $out" \
	--define "_rpmfilename %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm" \
	--define "netacct_version $version" \
	--define "netacct_stage $stage" \
	--define "_buildhost reproducible" \
	--define "use_source_date_epoch_as_buildtime 1" \
	--define "clamp_mtime_to_source_epoch 1" \
	--define "_binary_payload w6.xzdio" >&2
echo "$out/netacct-$version-1.$(rpm --eval '%{_arch}').rpm"
