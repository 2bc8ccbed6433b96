#!/usr/bin/env bash
# Runs one guest script on a real Linux Bluetooth stack inside a QEMU VM (TCG, no KVM needed):
# Debian's kernel (fetched beforehand by tests/vm/fetch-kernel.sh), the host's root shared
# read-only over 9p, two linked LE-only virtual controllers (btvirt) as hci0/hci1, the system
# dbus-daemon and bluetoothd. The guest script runs as root; its output, bluetoothd's debug log,
# a btmon capture and the serial console land in OUTDIR. Exits with the guest script's status.
#
# Usage: tests/vm/run.sh GUEST_SCRIPT OUTDIR [TIMEOUT_S]
#   GUEST_SCRIPT  executable on the host's filesystem (seen at the same path in the guest); it
#                 gets OTAGW_VM_OUT (the shared OUTDIR, writable) and OTAGW_VM_LOGS (guest tmpfs,
#                 copied to OUTDIR at the end) plus the caller's OTAGW_* variables.
#   TIMEOUT_S     limit for the guest script (default 90); a guest watchdog and a host timeout
#                 back it up.
# Env: OTAGW_VM_CACHE (default /var/cache/otagw-vm), OTAGW_VM_MEM (MiB, default 1024),
#      OTAGW_VM_CONTROLLERS (virtual controllers hci0.., 2..5, default 2),
#      OTAGW_VM_GATT_CHANNELS (bluetoothd's [GATT] Channels, 1..5, default 1: see guest-init.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "vm: FAIL: $*" >&2; exit 2; }

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 GUEST_SCRIPT OUTDIR [TIMEOUT_S]"
script=$(realpath -e "$1" 2>/dev/null) || die "guest script $1 does not exist"
[ -x "$script" ] || die "guest script $script is not executable"
timeout_s=${3:-90}
[[ $timeout_s =~ ^[1-9][0-9]{0,3}$ ]] || die "timeout '$timeout_s' is not a number of seconds"
controllers=${OTAGW_VM_CONTROLLERS:-2}
[[ $controllers =~ ^[2-5]$ ]] || die "OTAGW_VM_CONTROLLERS '$controllers' is not 2..5"
channels=${OTAGW_VM_GATT_CHANNELS:-1}
[[ $channels =~ ^[1-5]$ ]] || die "OTAGW_VM_GATT_CHANNELS '$channels' is not 1..5"
# Paths travel on the kernel command line and into shell variables in the guest.
[[ $script =~ ^[-/A-Za-z0-9._+]+$ ]] || die "guest script path has characters the VM cannot pass: $script"
[[ $here =~ ^[-/A-Za-z0-9._+]+$ ]] || die "harness path has characters the VM cannot pass: $here"
# The guest mounts tmpfs over these, hiding the host's files there. A checkout or build folder
# under one of them (a CI runner's clone in /tmp, say) is shared with the guest on its own and
# mounted at the same path over the tmpfs: the source tree (harness and guest scripts), the
# build folder (the programs) and the script's folder.
hidden() {
	case "$1/" in
	/tmp/* | /run/* | /var/tmp/* | /var/log/* | /var/lib/bluetooth/* | /var/lib/dbus/*) return 0 ;;
	esac
	return 1
}
binds=()
for d in "$(realpath -m "$here/../..")" "$(realpath -m "${OTAGW_BUILD_DIR:-/}")" \
	"$(dirname "$script")"; do
	hidden "$d" || continue
	[[ $d =~ ^[-/A-Za-z0-9._+]+$ ]] || die "folder $d has characters the VM cannot pass"
	inside=
	for b in "${binds[@]}"; do
		case "$d/" in "$b"/*) inside=1 ;; esac
	done
	[ -n "$inside" ] || binds+=("$d")
done

cache=${OTAGW_VM_CACHE:-/var/cache/otagw-vm}
ver=$(cat "$cache/current" 2>/dev/null) || ver=
kernel=$cache/boot/vmlinuz-$ver
if [ -z "$ver" ] || [ ! -f "$kernel" ] || [ ! -f "$cache/lib/modules/$ver/modules.dep" ]; then
	die "no VM kernel in $cache: run tests/vm/fetch-kernel.sh first (set-up step, as root)"
fi
for tool in qemu-system-x86_64 modprobe cpio btvirt bluetoothd btmon dbus-daemon busctl; do
	command -v "$tool" >/dev/null || [ -x "/usr/libexec/bluetooth/$tool" ] ||
		die "$tool not found (install: qemu-system-x86 kmod cpio bluez bluez-test-tools dbus)"
done
busybox=/bin/busybox
[ -x "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 || die "$busybox is not a static busybox (install busybox-static)"

mkdir -p "$2" || die "cannot create $2"
outdir=$(realpath "$2")
rm -rf "$outdir/.vm"
rm -f "$outdir"/{status,guest.log,console.log,bluetoothd.log,btmon.snoop,btvirt.log,vm.env}
mkdir -p "$outdir/.vm/initramfs/modules"

# One VM at a time on this machine: each takes a core and ~600 MiB.
exec 9>"${TMPDIR:-/tmp}/otagw-vm.lock"
flock -w 600 9 || die "another VM run held the lock for 10 minutes"

# The initramfs: static busybox, the virtio/9p modules in dependency order, the first stage.
ird=$outdir/.vm/initramfs
mkdir -p "$ird/bin"
cp "$busybox" "$ird/bin/busybox"
cp "$here/initramfs-init.sh" "$ird/init"
chmod 0755 "$ird/init"
for m in virtio_pci 9pnet_virtio 9p; do
	modprobe -d "$cache" -S "$ver" --show-depends "$m" || die "modprobe cannot resolve $m"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
	case "$ko" in *.ko) ;; *) die "compressed module $ko: the initramfs loader needs plain .ko" ;; esac
	cp "$ko" "$ird/modules/"
	basename "$ko" >>"$ird/modules.order"
done
(cd "$ird" && find . | cpio -o -H newc --quiet) >"$outdir/.vm/initramfs.cpio"

{
	printf 'OTAGW_VM_SCRIPT=%q\nOTAGW_VM_KDIR=%q\nOTAGW_VM_TIMEOUT=%q\n' "$script" "$cache" "$timeout_s"
	printf 'OTAGW_VM_CONTROLLERS=%q\nOTAGW_VM_GATT_CHANNELS=%q\n' "$controllers" "$channels"
	printf 'OTAGW_VM_BINDS=%q\n' "${binds[*]}"
	# For benchmarks: how busy the host was (the emulation's speed depends on it).
	printf 'export OTAGW_VM_HOST_LOAD=%q\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
	# Hand the caller's OTAGW_* settings (build and source dirs...) to the guest script.
	while IFS='=' read -r name _; do
		[[ $name =~ ^OTAGW_[A-Z0-9_]+$ ]] && [[ $name != OTAGW_VM_* ]] &&
			printf 'export %s=%q\n' "$name" "${!name}"
	done < <(env)
} >"$outdir/vm.env"

bind_args=()
for i in "${!binds[@]}"; do
	bind_args+=(-virtfs "local,path=${binds[i]},mount_tag=bind$i,security_model=none,readonly=on")
done
echo "vm: booting $ver, guest script $script (limit ${timeout_s} s), logs in $outdir"
start=$(date +%s)
rc=0
timeout -k 10 $((timeout_s + 90)) qemu-system-x86_64 \
	-machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m "${OTAGW_VM_MEM:-1024}" \
	-nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot \
	-kernel "$kernel" -initrd "$outdir/.vm/initramfs.cpio" \
	-append "console=ttyS0 panic=-1 loglevel=4 rdinit=/init otagw.init=$here/guest-init.sh" \
	-virtfs local,path=/,mount_tag=rootfs,security_model=none,readonly=on,multidevs=remap \
	-virtfs "local,path=$outdir,mount_tag=out,security_model=none" \
	"${bind_args[@]}" \
	</dev/null >"$outdir/console.log" 2>&1 || rc=$?
took=$(($(date +%s) - start))

status=$(cat "$outdir/status" 2>/dev/null) || status=
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
	why="QEMU did not end in $((timeout_s + 90)) s and was killed"
	status=124
elif [ -z "$status" ]; then
	why="the guest ended without a status (QEMU exit $rc; see console.log)"
	status=125
elif [ "$status" = 0 ]; then
	echo "vm: PASS: $(basename "$script") in ${took} s (logs in $outdir)"
	exit 0
elif [ "$status" = 124 ]; then
	why="the guest script hit its ${timeout_s} s limit"
elif [ "$status" = 125 ]; then
	why="the VM harness failed before the guest script ran"
else
	why="the guest script exited with status $status"
fi
echo "vm: FAIL: $(basename "$script"): $why, after ${took} s (logs in $outdir)" >&2
for f in guest.log console.log; do
	[ -s "$outdir/$f" ] && { echo "--- last lines of $f ---"; tail -n 40 "$outdir/$f"; } >&2
done
exit "$status"
