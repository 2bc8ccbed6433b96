#!/usr/bin/env bash
# otagwd.service as CMake generated it: it names the installed otagwd, `systemd-analyze verify`
# accepts it without a single warning (with ExecStart= pointed at the otagwd just built, and
# Documentation= checked against the man pages just built), and `systemd-analyze security
# --offline=yes` rates its exposure at 2.0 or less. Prints the score.
# Usage: test-unit.sh UNIT INSTALLED_OTAGWD BUILT_OTAGWD [MAN_DIR]
set -euo pipefail

if [ $# -lt 3 ]; then
	echo "Usage: test-unit.sh UNIT INSTALLED_OTAGWD BUILT_OTAGWD [MAN_DIR]" >&2
	exit 2
fi
unit=$1 installed=$2 built=$3 mandir=${4:-}
max_exposure=2.0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/otagw-unit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Exactly one ExecStart=, naming where `cmake --install` puts otagwd.
starts=$(grep -c '^ExecStart=' "$unit" || true)
if [ "$starts" -ne 1 ] || ! grep -qx "ExecStart=$installed" "$unit"; then
	echo "FAIL: $unit should have exactly one ExecStart=$installed; it has:"
	grep '^ExecStart=' "$unit" || true
	exit 1
fi
if grep -n '@[A-Za-z_]*@' "$unit"; then
	echo "FAIL: $unit has unsubstituted @VARIABLES@ (above)"
	exit 1
fi

# verify checks that ExecStart= exists and is executable: use the build tree's otagwd. The name
# must stay otagwd.service.
sed "s|^ExecStart=.*|ExecStart=$built|" "$unit" >"$tmp/otagwd.service"
man_opt=--man=yes
if [ -n "$mandir" ] && [ -d "$mandir" ]; then
	export MANPATH=$mandir
else
	echo "note: man pages not built (no scdoc); Documentation= not checked"
	man_opt=--man=no
fi
if ! out=$(systemd-analyze verify "$man_opt" "$tmp/otagwd.service" 2>&1) || [ -n "$out" ]; then
	echo "FAIL: systemd-analyze verify:"
	echo "$out"
	exit 1
fi
echo "ok: systemd-analyze verify $man_opt: no warnings"

out=$(systemd-analyze security --offline=yes "$tmp/otagwd.service" 2>&1) || {
	echo "FAIL: systemd-analyze security --offline=yes:"
	echo "$out"
	exit 1
}
# "→ Overall exposure level for otagwd.service: 1.5 OK 🙂" ("->", ":-)" without UTF-8)
score=$(sed -n 's/.*Overall exposure level for otagwd\.service: \([0-9.]*\).*/\1/p' <<<"$out")
if [ -z "$score" ]; then
	echo "FAIL: no exposure level in the output of systemd-analyze security:"
	echo "$out"
	exit 1
fi
echo "Settings that still count (systemd-analyze security):"
# Failed checks start with ✗ ("-" without UTF-8).
grep -E '^(✗|-) ' <<<"$out" | sed 's/  */ /g' || true
echo "Exposure level of otagwd.service: $score (at most $max_exposure)"
if ! awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s <= m) }'; then
	echo "FAIL: exposure $score is above $max_exposure"
	exit 1
fi
