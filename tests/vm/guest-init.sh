#!/bin/bash
# Second stage of the BLE VM guest, PID 1 on the host's read-only root: makes the writable
# places, brings up linked LE-only virtual controllers (btvirt; two unless the host asked for
# more), loopback, the system bus and
# bluetoothd, runs the test's guest script as root, collects the logs into the writable share
# and powers off. Started by tests/vm/initramfs-init.sh; every fact behind the order of steps is
# in shared/ble-vm.md.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

out=/run/otagw-vm    # the writable 9p share: OUTDIR on the host
logs=/run/otagw-logs # tmpfs: logs that grow fast, copied to $out at the end
msg() { echo "otagw-vm: $*" >/dev/console; }

poweroff_now() {
	sync
	echo o >/proc/sysrq-trigger
	sleep 10
	exit 1 # PID 1 exiting panics; panic=-1 with -no-reboot ends QEMU all the same
}

# Collects what the guest produced and powers off; $1 is the status the host reports.
finish() {
	local status=$1 p
	# Stop the long-lived daemons so their logs are complete (btmon flushes on SIGINT).
	for p in $bluetoothd_pid $btmon_pid; do
		[ -n "$p" ] && kill -INT "$p" 2>/dev/null
	done
	sleep 0.5
	cp -f "$logs"/* "$out"/ 2>/dev/null
	echo "$status" >"$out/status"
	msg "guest script finished with status $status"
	poweroff_now
}

mount_tmpfs() {
	local d
	for d in "$@"; do
		[ -d "$d" ] || { msg "no $d on the host root to mount tmpfs on"; poweroff_now; }
		mount -t tmpfs -o mode=0755 tmpfs "$d" || { msg "cannot mount tmpfs on $d"; poweroff_now; }
	done
}

mount_tmpfs /tmp /run /var/tmp /var/log /var/lib/bluetooth /var/lib/dbus
chmod 1777 /tmp /var/tmp
mkdir -p /dev/pts /dev/shm "$out" "$logs"
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out "$out" ||
	{ msg "cannot mount the writable share"; poweroff_now; }
# shellcheck source=/dev/null
. "$out/vm.env" || { msg "no vm.env in the share"; poweroff_now; }
: "${OTAGW_VM_SCRIPT:?}" "${OTAGW_VM_KDIR:?}" "${OTAGW_VM_TIMEOUT:?}"
# Host folders the tmpfs mounts above hid (run.sh shares them as bind0..): back at their paths.
i=0
for d in ${OTAGW_VM_BINDS:-}; do
	mkdir -p "$d" && mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 \
		"bind$i" "$d" || { msg "cannot mount the host's $d"; poweroff_now; }
	i=$((i + 1))
done
ncontrollers=${OTAGW_VM_CONTROLLERS:-2}
last=hci$((ncontrollers - 1))
export OTAGW_VM_OUT=$out OTAGW_VM_LOGS=$logs
echo 1 >/proc/sys/kernel/sysrq
hostname otagw-vm
# Loopback, for test servers in the guest (the Memfault stand-in).
ip link set lo up 2>/dev/null || busybox ifconfig lo 127.0.0.1 up 2>/dev/null

bluetoothd_pid= btmon_pid=
# Guest watchdog: whatever hangs, the VM ends and the host learns why.
(
	sleep $((OTAGW_VM_TIMEOUT + 30))
	msg "WATCHDOG: the guest did not finish in $((OTAGW_VM_TIMEOUT + 30)) s"
	cp -f "$logs"/* "$out"/ 2>/dev/null
	echo 124 >"$out/status"
	poweroff_now
) &

# The host root has no /lib/modules for this kernel: load from the unpacked tree, and have the
# kernel's own autoloading do the same through a wrapper.
modprobe=$(command -v modprobe)
printf '#!/bin/sh\nexec %s -d %s "$@"\n' "$modprobe" "$OTAGW_VM_KDIR" >/run/modprobe-vm
chmod 0755 /run/modprobe-vm

# Under emulation the first controller bring-up autoloads ~9 crypto modules one after another,
# which can outlast the 2 s HCI Reset timeout and kill the controller: load them all at once
# with autoloading off while btvirt's controllers initialise.
echo >/proc/sys/kernel/modprobe
/run/modprobe-vm -a ctr sha512_ssse3 sha3_generic jitterentropy_rng drbg af_alg \
	algif_skcipher algif_hash ecb cmac ecdh_generic bnep hci_vhci ||
	{ msg "cannot load the Bluetooth modules"; finish 125; }

# btmon drops packets under emulation unless the socket buffers are large.
echo 16777216 >/proc/sys/net/core/rmem_default
echo 16777216 >/proc/sys/net/core/rmem_max
btmon -w "$logs/btmon.snoop" >/dev/null 2>&1 &
btmon_pid=$!

# LE-only controllers linked to each other (dual-mode ones make bluetoothd try BR/EDR after
# LE pairing, which stalls GATT).
btvirt -L -l"$ncontrollers" >"$logs/btvirt.log" 2>&1 &
for _ in $(seq 100); do
	[ -e /sys/class/bluetooth/hci0 ] && [ -e "/sys/class/bluetooth/$last" ] && break
	sleep 0.1
done
[ -e "/sys/class/bluetooth/$last" ] || { msg "btvirt made no hci0..$last"; finish 125; }

mkdir -p /run/dbus
dbus-uuidgen --ensure
dbus-daemon --system --fork || { msg "cannot start the system dbus-daemon"; finish 125; }
# One ATT bearer: with EATT (bluetoothd's default of 3 channels) BlueZ 5.66 spreads
# write-without-response and notifications over every bearer and the peer sees them reordered;
# otagw needs in-order GATT packets (docs/PROTOCOL.md, section 12), so gateways run with Channels = 1.
# (OTAGW_VM_GATT_CHANNELS overrides it, to measure what reordering costs.)
printf '[GATT]\nChannels = %s\n' "${OTAGW_VM_GATT_CHANNELS:-1}" >/run/bluetooth-main.conf
/usr/libexec/bluetooth/bluetoothd -n -d -f /run/bluetooth-main.conf >"$logs/bluetoothd.log" 2>&1 &
bluetoothd_pid=$!

adapters=0
for _ in $(seq 300); do
	adapters=$(busctl --system --list tree org.bluez 2>/dev/null | grep -c '^/org/bluez/hci[0-9]$')
	[ "$adapters" = "$ncontrollers" ] && break
	sleep 0.1
done
[ "$adapters" = "$ncontrollers" ] || { msg "bluetoothd did not register hci0..$last"; finish 125; }
echo "/run/modprobe-vm" >/proc/sys/kernel/modprobe
msg "hci0..$last up in bluetoothd after $(cut -d' ' -f1 /proc/uptime) s; running $OTAGW_VM_SCRIPT"

cd "$out" || finish 125
timeout -k 5 "$OTAGW_VM_TIMEOUT" "$OTAGW_VM_SCRIPT" >"$out/guest.log" 2>&1 </dev/null
finish $?
