#!/bin/bash
# The BLE transports on a real BlueZ stack (guest side of tests/vm/run.sh): a central on hci0
# (ble_central) and a peripheral on hci1 (ble_periph) exchange echoes of every size and 256 KiB
# each way over GATT, then over L2CAP CoC, each with a link drop and a reconnect; then a raw
# L2CAP CoC transfer on the same link gives the baseline. Prints the goodput of each.
set -euo pipefail
src=${OTAGW_SOURCE_DIR:?}
bin=${OTAGW_BUILD_DIR:?}/tests/ble
. "$src/tests/vm/lib.sh"
bytes=262144 psm=131
export BLETEST_DEBUG=1

# What bluetoothd tells its clients, for reading a failure afterwards.
timeout 105 dbus-monitor --system "type='signal',sender='org.bluez'" \
	>"$OTAGW_VM_LOGS/dbus-monitor.log" 2>&1 &
vm_power hci0
vm_power hci1
a0=$(vm_addr hci0) a1=$(vm_addr hci1)
echo "vm-ble: central hci0 $a0, peripheral hci1 $a1"

plog=$OTAGW_VM_OUT/periph.log
timeout 100 "$bin/bletest-periph" hci1 "$psm" otagw-test hci0 "$a0" >"$plog" 2>&1 &
periph=$!
vm_wait_for "$plog" serving

# bluetoothd drops an ACL about 2 s after Device1.Disconnect (or after the last user left):
# wait for it, so a delayed disconnect cannot cut what comes next.
dev0=/org/bluez/hci0/dev_${a1//:/_}
wait_disconnected() {
	busctl --system call org.bluez "$dev0" org.bluez.Device1 Disconnect >/dev/null 2>&1 || true
	for _ in $(seq 50); do
		[ "$(busctl --system get-property org.bluez "$dev0" org.bluez.Device1 Connected \
			2>/dev/null)" != "b true" ] && return 0
		sleep 0.1
	done
}

status=0
for kind in ${OTAGW_BLETEST_KINDS:-gatt l2cap}; do
	echo "vm-ble: --- $kind ---"
	if ! timeout 70 "$bin/bletest-central" hci0 "$kind" "$bytes"; then
		echo "vm-ble: $kind FAILED"
		status=1
	fi
	wait_disconnected
done

kill -TERM "$periph" 2>/dev/null || true
wait "$periph" || { echo "vm-ble: the peripheral reported errors"; status=1; }
echo "vm-ble: --- peripheral log ---"
cat "$plog"

# Raw baseline on the same link: SDUs as large as our L2CAP messages (4101 bytes), then as large
# as our GATT messages (510 bytes).
echo "vm-ble: --- raw L2CAP CoC baseline ---"
wait_disconnected
btmgmt -i hci1 connectable on >/dev/null
btmgmt -i hci1 advertising on >/dev/null
for sdu in 4101 510; do
	rlog=$OTAGW_VM_OUT/raw-$sdu.log
	timeout 40 "$OTAGW_BUILD_DIR/tests/vm/otagw-l2cap-bulk" recv "$a1" 133 "$bytes" >"$rlog" 2>&1 &
	rx=$!
	vm_wait_for "$rlog" listening
	timeout 40 "$OTAGW_BUILD_DIR/tests/vm/otagw-l2cap-bulk" send "$a0" "$a1" 133 "$bytes" "$sdu" ||
		status=1
	wait "$rx" || status=1
	grep 'recv' "$rlog" || true
done

[ "$status" = 0 ] && echo "vm-ble: PASS" || echo "vm-ble: FAIL"
exit "$status"
