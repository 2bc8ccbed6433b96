#!/usr/bin/env bash
# Bash completion for otagwctl: commands, options and command arguments complete as
# otagwctl(1) documents them; serials are taken from `otagwctl --json devices` (its documented
# format); and when otagwd is not running (a private bus where nothing owns io.otagw) completion
# offers no serial and prints nothing.
# Usage: test-completion.sh OTAGWCTL_BASH
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "Usage: test-completion.sh OTAGWCTL_BASH" >&2
	exit 2
fi
completion=$(realpath "$1")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/otagw-completion.XXXXXX")
bus_pid=''
cleanup() {
	[ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null && wait "$bus_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=/dev/null
source "$completion"
failures=0
# expect "CANDIDATES" WORD... : completing the last WORD offers exactly CANDIDATES (sorted).
expect() {
	local want=$1 got err
	shift
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	_otagwctl 2>"$tmp/stderr"
	got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | xargs)
	# shellcheck disable=SC2086 # the expected candidates are a list of words
	want=$(printf '%s\n' $want | sort | xargs)
	err=$(cat "$tmp/stderr")
	if [ "$got" = "$want" ] && [ -z "$err" ]; then
		echo "ok: [$*] -> [$got]"
	else
		echo "FAIL: [$*] -> [$got]${err:+ (stderr: $err)}, expected [$want]"
		failures=$((failures + 1))
	fi
}

# A private bus on which nothing owns io.otagw, as the system bus for busctl and otagwctl.
dbus-daemon --session --nofork --address="unix:path=$tmp/bus" --print-address=3 \
	3>"$tmp/address" 2>/dev/null &
bus_pid=$!
for _ in $(seq 100); do
	[ -s "$tmp/address" ] && break
	sleep 0.1
done
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$tmp/bus"
export DBUS_SESSION_BUS_ADDRESS="unix:path=$tmp/bus"
# No otagwctl in PATH yet: completion falls back to busctl.
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | while read -r d; do
	[ -x "$d/otagwctl" ] || printf '%s:' "$d"
done)

all_commands='status devices show check abort cache history watch'
expect "$all_commands" otagwctl ''
expect 'status show' otagwctl s
expect '--json --system --user --help --version' otagwctl --
expect 'cache check' otagwctl --json c
expect 'purge' otagwctl cache ''
expect '' otagwctl cache purge ''
expect '--json --system --user --help --version --all' otagwctl check -
expect '--json --system --user --help --version' otagwctl check --all -
expect '--json --system --user --help --version -n' otagwctl history -
expect '' otagwctl history -n ''
expect '--json --system --user --help --version --until-idle' otagwctl watch -
# otagwd not running: no serials, no noise.
expect '' otagwctl show ''
expect '' otagwctl --user abort G

# A stand-in for otagwctl (not written yet) that prints `otagwctl --json devices` as
# otagwctl(1) specifies it; completion must pass the bus option on.
mkdir "$tmp/bin"
cat >"$tmp/bin/otagwctl" <<'STANDIN'
#!/bin/sh
[ "$1" = --user ] && [ "$2" = --json ] && [ "$3" = devices ] || exit 1
echo '[{"Path":"/io/otagw/device/GW_2d0042","Serial":"GW-0042","State":"idle"},{"Path":"/io/otagw/device/GW_2d0043_5fb","Serial":"GW-0043_b","State":"transferring"},{"Path":"/io/otagw/device/lab7","Serial":"lab7","Link":"lab"}]'
STANDIN
chmod +x "$tmp/bin/otagwctl"
PATH=$tmp/bin:$PATH
expect 'GW-0042 GW-0043_b lab7' otagwctl --user show ''
expect 'GW-0042 GW-0043_b' otagwctl check --user G
expect 'GW-0043_b' otagwctl --user history -n 5 GW-0043
expect '' otagwctl --user show GW-0042 ''
expect '' otagwctl --system show '' # the stand-in answers only for --user

[ $failures -eq 0 ] && echo "all completion checks passed"
[ $failures -eq 0 ]
