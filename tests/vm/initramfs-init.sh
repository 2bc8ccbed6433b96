#!/bin/busybox sh
# First stage of the BLE VM guest (runs as /init of a busybox initramfs): loads the virtio and
# 9p modules Debian builds as modules, mounts the host's root read-only over 9p and hands over
# to the second stage (tests/vm/guest-init.sh, on that root) with switch_root.
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /newroot
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev

fail() {
	echo "otagw-vm initramfs: $*" >/dev/console
	$bb sync
	$bb poweroff -f
}

for ko in $($bb cat /modules.order); do
	$bb insmod "/modules/$ko" || fail "insmod $ko failed"
done

stage2=
for arg in $($bb cat /proc/cmdline); do
	case "$arg" in
	otagw.init=*) stage2=${arg#otagw.init=} ;;
	esac
done
[ -n "$stage2" ] || fail "no otagw.init= on the kernel command line"

# cache=loose: the host root does not change under a run; caching makes program start-up fast.
# The virtio devices may still be probing right after insmod: retry for a few seconds.
n=0
until $bb mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 \
    rootfs /newroot 2>/dev/null; do
	n=$((n + 1))
	[ $n -lt 50 ] || fail "cannot mount the host root over 9p ($($bb ls /sys/bus/virtio/devices))"
	$bb sleep 0.1
done
for d in proc sys dev; do
	$bb mount --move "/$d" "/newroot/$d" || fail "cannot move /$d"
done
exec $bb switch_root /newroot "$stage2"
