#!/usr/bin/env bash
# Fetches Debian's amd64 kernel for the BLE VM harness (tests/vm/run.sh) into a cache folder
# outside the source tree, once: the .deb is downloaded with apt-get, unpacked (never installed)
# and given the modules.dep the package does not ship. Idempotent; run it at set-up time (CI's
# dependency step), never from a test. The cache holds boot/vmlinuz-VER and lib/modules/VER.
# Usage: tests/vm/fetch-kernel.sh    (env OTAGW_VM_CACHE overrides /var/cache/otagw-vm;
#                                     OTAGW_VM_KERNEL_PKG picks another package than the
#                                     one linux-image-amd64 depends on)
set -euo pipefail

cache=${OTAGW_VM_CACHE:-/var/cache/otagw-vm}
die() { echo "fetch-kernel: $*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb depmod; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian's apt, dpkg and kmod are needed)"
done

# The versioned package the meta-package points at, e.g. linux-image-6.1.0-28-amd64.
pkg=${OTAGW_VM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
	if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
		apt-get update -q >/dev/null
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
	fi
	[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (run apt-get update)"
fi
ver=${pkg#linux-image-}

stamp="$cache/$pkg.ok"
if [ -f "$stamp" ] && [ -f "$cache/boot/vmlinuz-$ver" ] && [ -f "$cache/lib/modules/$ver/modules.dep" ]; then
	echo "fetch-kernel: $pkg already in $cache"
	exit 0
fi

mkdir -p "$cache" || die "cannot create $cache (run as root or set OTAGW_VM_CACHE)"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fetch-kernel: downloading $pkg"
# apt-get download runs as the _apt user when root; give it a folder it may write.
chmod 0777 "$tmp"
(cd "$tmp" && apt-get download -q "$pkg") || die "apt-get download $pkg failed"
deb=$(ls "$tmp"/*.deb) || die "no .deb downloaded for $pkg"

echo "fetch-kernel: unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$tmp/root"
[ -f "$tmp/root/boot/vmlinuz-$ver" ] || die "$pkg has no boot/vmlinuz-$ver"
[ -d "$tmp/root/lib/modules/$ver" ] || die "$pkg has no lib/modules/$ver"
depmod -b "$tmp/root" "$ver"

# Replace the kernel of this version whole, then mark it complete: a half-done fetch never
# looks usable to run.sh.
rm -rf "$cache/boot/vmlinuz-$ver" "$cache/lib/modules/$ver" "$stamp"
mkdir -p "$cache/boot" "$cache/lib/modules"
mv "$tmp/root/boot/vmlinuz-$ver" "$cache/boot/"
mv "$tmp/root/lib/modules/$ver" "$cache/lib/modules/"
echo "$ver" >"$cache/current"
touch "$stamp"
echo "fetch-kernel: $pkg ready in $cache"
