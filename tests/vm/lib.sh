# Helpers for guest scripts of the BLE VM harness (tests/vm/run.sh); source it from a guest
# script. Everything here runs inside the guest, where hci0 and hci1 are two linked LE-only
# controllers already registered with bluetoothd.

# vm_addr hci0: the adapter's public address as bluetoothd reports it.
vm_addr() {
	busctl --system get-property org.bluez "/org/bluez/$1" org.bluez.Adapter1 Address |
		sed -n 's/^s "\(.*\)"$/\1/p'
}

# vm_power hci0: powers the adapter through bluetoothd and waits until it reports Powered.
vm_power() {
	local i
	busctl --system set-property org.bluez "/org/bluez/$1" org.bluez.Adapter1 Powered b true
	for i in $(seq 50); do
		[ "$(busctl --system get-property org.bluez "/org/bluez/$1" org.bluez.Adapter1 \
			Powered)" = "b true" ] && return 0
		sleep 0.1
	done
	echo "vm: $1 did not power on" >&2
	return 1
}

# vm_wait_for FILE PATTERN [TENTHS]: waits until FILE contains PATTERN (default 10 s).
vm_wait_for() {
	local i
	for i in $(seq "${3:-100}"); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "vm: '$2' never appeared in $1" >&2
	return 1
}
