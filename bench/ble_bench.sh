#!/bin/bash
# The BLE benchmark, guest side of tests/vm/run.sh (run it with `cmake --build build --target
# bench-ble`): goodput of a 256 KiB image through otagwd (central on hci0) and otagw-devsim
# (peripheral on hci1), over GATT and over L2CAP CoC, each against a raw bulk transfer on the
# same virtual link in the same run: the BLE transports' own windowed bulk test over GATT
# (bletest, as fast as our GATT path goes without the protocol) and otagw-l2cap-bulk over
# L2CAP CoC with 4101-byte SDUs (our largest message). Each otagw run follows its raw run
# (the emulation's speed drifts with the host's load, so each pair gives a ratio); the table
# gives the medians of RUNS pairs. The figures also go to OUTDIR/ble-bench.txt.
#
# Goodput: image bytes over the time from the first byte the device receives to the end:
#  - otagw: devsim's first DATA to its last byte stored ("data"), and to its RESULT, sent
#    after it read the image back and checked its SHA-256 ("result");
#  - bletest: first message to the receiver's "all checked" answer;
#  - l2cap-bulk: the receiver's first SDU to its last byte.
# A diagnostic GATT run of the raw baseline acknowledges every message, as the device library
# does, to show what that costs on this link.
# Env: OTAGW_BENCH_RUNS (default 5), OTAGW_BENCH_KINDS (default "gatt l2cap"),
#      OTAGW_BENCH_WINDOW (devsim's window, default 16), OTAGW_BENCH_OTAGW_ONLY=1 (no raw runs:
#      with EATT the raw GATT test, which has no recovery, fails on reordered writes).
set -euo pipefail
src=${OTAGW_SOURCE_DIR:?}
bld=${OTAGW_BUILD_DIR:?}
. "$src/tests/vm/lib.sh"
out=$OTAGW_VM_OUT
work=$(mktemp -d /tmp/ble-bench.XXXXXX)
runs=${OTAGW_BENCH_RUNS:-5}
kinds=${OTAGW_BENCH_KINDS:-gatt l2cap}
window=${OTAGW_BENCH_WINDOW:-16}
size=262144
key=0123456789abcdef0123456789abcdef
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
fail() {
	echo "ble-bench: FAIL: $*" >&2
	exit 1
}
# wait_for FILE PATTERN SECONDS: vm_wait_for in seconds, failing the benchmark.
wait_for() {
	vm_wait_for "$1" "$2" $(($3 * 10)) || fail "'$2' did not appear in $(basename "$1") within $3 s"
}
# disconnect_all: waits until hci0 has no link left (bluetoothd drops one 2 s after its last
# user), so a delayed disconnect cannot cut the next run.
disconnect_all() {
	local d devs
	devs=$(busctl --system --list tree org.bluez | grep -o '/org/bluez/hci0/dev_[0-9A-F_]*$' || true)
	for d in $devs; do
		busctl --system call org.bluez "$d" org.bluez.Device1 Disconnect >/dev/null 2>&1 || true
	done
	for _ in $(seq 50); do
		local up=0
		for d in $devs; do
			[ "$(busctl --system get-property org.bluez "$d" org.bluez.Device1 Connected \
				2>/dev/null)" = "b true" ] && up=1
		done
		[ $up = 0 ] && return 0
		sleep 0.1
	done
}

rm -f "$out"/ble-bench.txt "$out"/bench-*

vm_power hci0
vm_power hci1
a0=$(vm_addr hci0)
a1=$(vm_addr hci1)
head -c $size /dev/urandom >"$work/fw.bin"
echo "$key" >"$work/key"
chmod 0600 "$work/key"
"$bld/tests/support/otagw-mockmf" -q -k "$key" -P "fw.bin=$work/fw.bin" \
	-r devsim:main:2.0.0:fw.bin -d "$work" -i "$work/mock.json" >"$out/bench-mockmf.log" 2>&1 &
pids+=($!)
wait_for "$work/mock.json" base_url 10

# raw_gatt NAME [ACK_EVERY]: our GATT path without the protocol (bletest's windowed bulk).
# Prints kB/s.
raw_gatt() {
	local log=$out/bench-$1.log
	timeout 60 env BLETEST_ACK_EVERY="${2:-}" \
		"$bld/tests/ble/bletest-periph" hci1 0 bench hci0 "$a0" >"$log.periph" 2>&1 &
	local periph=$!
	wait_for "$log.periph" serving 10
	BLETEST_BULK_ONLY=1 timeout 60 "$bld/tests/ble/bletest-central" hci0 gatt $size >"$log" 2>&1 ||
		fail "raw GATT $1: $(tail -n 2 "$log")"
	# The link must be gone before the peripheral's GATT application is: bluetoothd would
	# tell hci0 its service went away, and hci0 would forget that hci1 offers it.
	disconnect_all
	kill -INT "$periph" 2>/dev/null || true
	wait "$periph" 2>/dev/null || true
	sed -n 's/.*central->peripheral .* \([0-9.]*\) kB\/s$/\1/p' "$log"
}

# raw_l2cap NAME: a raw CoC transfer with SDUs of our largest message. Prints kB/s.
raw_l2cap() {
	local log=$out/bench-$1.log
	timeout 40 "$bld/tests/vm/otagw-l2cap-bulk" recv "$a1" 133 $size >"$log" 2>&1 &
	local rx=$!
	wait_for "$log" listening 10
	btmgmt -i hci1 connectable on >/dev/null
	btmgmt -i hci1 advertising on >/dev/null
	timeout 40 "$bld/tests/vm/otagw-l2cap-bulk" send "$a0" "$a1" 133 $size 4101 >>"$log.send" \
		2>&1 || fail "raw L2CAP $1: $(tail -n 2 "$log.send")"
	wait "$rx" || fail "raw L2CAP $1: the receiver failed"
	btmgmt -i hci1 advertising off >/dev/null
	disconnect_all
	sed -n 's/^l2cap-bulk: recv .* \([0-9.]*\) kB\/s$/\1/p' "$log"
}

# otagw KIND N: otagwd and devsim, a fresh gateway and device each time. Prints "kB/s (to
# RESULT) kB/s (to the last byte)".
otagw() {
	local kind=$1 n=$2 extra=() log=$out/bench-otagw-$1-$2.log
	local ca base
	base=$(jq -r .base_url "$work/mock.json")
	ca=$(jq -r .ca_file "$work/mock.json")
	[ "$kind" = l2cap ] && extra=(--l2cap 131)
	rm -rf "$work/state-$kind-$n"
	cat >"$work/otagw-$kind-$n.conf" <<EOF
[general]
state_dir = $work/state-$kind-$n
cache_dir = $work/cache
cache_max = 64M
log_level = debug

[memfault]
project_key_file = $work/key
base_url = $base
ca_file = $ca

[ble]
enabled = yes
adapter = hci0
transport = auto
max_connections = 1
scan_interval = 3s

[dbus]
bus = none
EOF
	"$bld/daemon/otagwd" -c "$work/otagw-$kind-$n.conf" >"$log" 2>&1 &
	local gwd=$!
	wait_for "$log" "adapter hci0 is up" 20
	timeout 90 "$bld/tools/devsim/otagw-devsim" --ble hci1 "${extra[@]}" \
		--serial "BENCH-$kind-$n" --state-dir "$work/dev" --events "$work/$kind-$n.events" \
		--max-payload 4096 --window "$window" --once --progress none \
		>"$out/bench-devsim-$kind-$n.log" 2>&1 || fail "otagw $kind run $n: devsim failed"
	kill -TERM "$gwd"
	wait "$gwd" || true
	disconnect_all
	cp "$work/$kind-$n.events" "$out/bench-devsim-$kind-$n.events"
	echo "$(jq -r 'select(.event == "transfer") | (.size / .transfer_s / 1000)' \
		"$work/$kind-$n.events" | head -n 1)" \
		"$(jq -rs '(map(select(.event == "transfer"))[0]) as $t |
			(map(select(.event == "progress" and .offset == .size))[0].t) as $last |
			($t.size / ($last - $t.t_first_data) / 1000)' "$work/$kind-$n.events")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A figs
only=${OTAGW_BENCH_OTAGW_ONLY:-}
load0=${OTAGW_VM_HOST_LOAD:-unknown}
for ((i = 1; i <= runs; i++)); do
	for kind in $kinds; do
		if [ -n "$only" ]; then
			r=0
		elif [ "$kind" = gatt ]; then
			r=$(raw_gatt "raw-gatt-$i")
			a=$(raw_gatt "raw-gatt-ack1-$i" 1)
			echo "ble-bench: run $i gatt raw, acknowledging every message: $a"
			figs[ack1-$kind]+="${a%% *} "
		else
			r=$(raw_l2cap "raw-l2cap-$i")
		fi
		o=$(otagw "$kind" "$i")
		rw=$(jq -r 'select(.event == "transfer") | "\(.rewinds) REWINDs asked, \(.data_frames) DATA frames for \(.size) bytes"' "$out/bench-devsim-$kind-$i.events")
		echo "ble-bench: run $i $kind: $rw"
		echo "ble-bench: run $i $kind raw: $r"
		echo "ble-bench: run $i $kind otagw (to RESULT, to the last byte): $o"
		figs[raw-$kind]+="${r%% *} "
		o1=${o%% *}
		o2=${o#* }
		figs[otagw-$kind]+="$o1 "
		figs[data-$kind]+="${o2%% *} "
		if [ -z "$only" ]; then
			figs[ratio-$kind]+="$(echo "$o1 $r" | awk '{ print 100 * $1 / $2 }') "
			figs[dratio-$kind]+="$(echo "${o2%% *} $r" | awk '{ print 100 * $1 / $2 }') "
			[ "$kind" = gatt ] &&
				figs[aratio-$kind]+="$(echo "${a%% *} $r" | awk '{ print 100 * $1 / $2 }') "
		fi
	done
done

med() { echo "${figs[$1]:-0}" | tr ' ' '\n' | grep . | median; }
{
	echo "BLE benchmark: 256 KiB image, $runs runs per kind (medians), devsim window $window," \
		"bluetoothd [GATT] Channels = $(sed -n 's/^Channels = //p' /run/bluetooth-main.conf)," \
		"host load at the start: $load0"
	printf '%-6s %10s %14s %14s %10s %10s\n' kind "raw kB/s" "otagw kB/s" "to last byte" \
		"ratio" "(to last)"
	for kind in $kinds; do
		printf '%-6s %10.1f %14.1f %14.1f %9.1f%% %9.1f%%\n' "$kind" "$(med "raw-$kind")" \
			"$(med "otagw-$kind")" "$(med "data-$kind")" "$(med "ratio-$kind")" \
			"$(med "dratio-$kind")"
		if [ "$kind" = gatt ] && [ -z "$only" ]; then
			printf '%-6s %10.1f  (raw GATT acknowledging every message: %.1f%% of raw)\n' \
				gatt-1 "$(med "ack1-$kind")" "$(med "aratio-$kind")"
		fi
	done
} | tee "$out/ble-bench.txt"
echo "ble-bench: PASS"
