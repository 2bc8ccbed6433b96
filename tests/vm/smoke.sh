#!/bin/bash
# Smoke test of the BLE VM harness (guest side): both virtual adapters power up, and a raw 1 MiB
# L2CAP LE CoC transfer from hci0 to hci1 completes; prints its speed.
set -euo pipefail
here=$(dirname "$0")
. "$here/lib.sh"
bulk=${OTAGW_BUILD_DIR:?}/tests/vm/otagw-l2cap-bulk
bytes=1048576 psm=129

vm_power hci0
vm_power hci1
a0=$(vm_addr hci0) a1=$(vm_addr hci1)
echo "smoke: hci0 $a0, hci1 $a1, both powered"

timeout 40 "$bulk" recv "$a1" "$psm" "$bytes" >"$OTAGW_VM_OUT/smoke-recv.log" 2>&1 &
rx=$!
vm_wait_for "$OTAGW_VM_OUT/smoke-recv.log" listening
# btvirt reports an advertiser only when advertising or scanning starts: advertise before the
# connect starts its scan.
btmgmt -i hci1 connectable on >/dev/null
btmgmt -i hci1 advertising on >/dev/null
timeout 40 "$bulk" send "$a0" "$a1" "$psm" "$bytes" 1000
wait "$rx" || { echo "smoke: receiver failed:"; cat "$OTAGW_VM_OUT/smoke-recv.log"; exit 1; }
cat "$OTAGW_VM_OUT/smoke-recv.log"
echo "smoke: PASS"
