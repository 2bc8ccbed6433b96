#!/usr/bin/env bash
# The D-Bus policy systemd/io.otagw.conf, loaded unmodified into a private dbus-daemon configured
# like the system bus (everything denied unless a policy allows it): it loads without warnings;
# only user otagw may own io.otagw; anyone may read; only root and group otagw may call what
# changes something. bus-holder owns the name as otagw and answers every call it receives, so a
# call the policy lets through succeeds and one it refuses fails with AccessDenied.
#
# The policy names the otagw user and group, which need not exist on the test machine. The test
# therefore runs in a private mount namespace whose /etc/passwd and /etc/group (bind-mounted
# copies) add them and a member of the group, otagw-ctl; the system's files are not touched.
# Needs root (unshare, setpriv); skipped (exit 77) otherwise.
# Usage: test-dbus-policy.sh POLICY BUS_HOLDER
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "Usage: test-dbus-policy.sh POLICY BUS_HOLDER" >&2
	exit 2
fi
policy=$(realpath "$1")
holder_bin=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: needs root (a private mount namespace and setpriv)"
	exit 77
fi
if [ -z "${OTAGW_POLICY_NS:-}" ]; then
	if ! unshare --mount --propagation private true 2>/dev/null; then
		echo "SKIP: cannot create a mount namespace here"
		exit 77
	fi
	OTAGW_POLICY_NS=1 exec unshare --mount --propagation private "$BASH" "$0" "$@"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/otagw-dbus-policy.XXXXXX")
bus_pid='' holder_pid=''
cleanup() {
	[ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null && wait "$holder_pid" 2>/dev/null
	[ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null && wait "$bus_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
chmod 0755 "$tmp" # the bus socket must be reachable by the unprivileged users

# ---- users: otagw (the daemon), otagw-ctl (member of group otagw), nobody (anyone) ----

# A uid/gid that neither the passwd nor the group database uses, from $1 upwards.
free_id() {
	local id=$1
	while getent passwd "$id" >/dev/null || getent group "$id" >/dev/null; do
		id=$((id + 1))
	done
	echo "$id"
}

cp /etc/passwd "$tmp/passwd"
cp /etc/group "$tmp/group"
if ! getent group otagw >/dev/null; then
	echo "otagw:x:$(free_id 59100):" >>"$tmp/group"
fi
if ! getent passwd otagw >/dev/null; then
	gid=$(awk -F: '$1 == "otagw" { print $3 }' "$tmp/group")
	echo "otagw:x:$(free_id 59100):$gid:otagw test:/nonexistent:/usr/sbin/nologin" \
		>>"$tmp/passwd"
fi
ctl_id=$(free_id 59200)
echo "otagw-ctl:x:$ctl_id:$ctl_id:otagw control test:/nonexistent:/usr/sbin/nologin" \
	>>"$tmp/passwd"
echo "otagw-ctl:x:$ctl_id:" >>"$tmp/group"
# Add otagw-ctl to the members (4th field) of group otagw.
awk -F: -v OFS=: '$1 == "otagw" { $4 = ($4 == "" ? "otagw-ctl" : $4 ",otagw-ctl") } 1' \
	"$tmp/group" >"$tmp/group.new"
mv "$tmp/group.new" "$tmp/group"
chmod 0644 "$tmp/passwd" "$tmp/group"
mount --bind "$tmp/passwd" /etc/passwd
mount --bind "$tmp/group" /etc/group
id otagw-ctl | grep -q '(otagw)' || {
	echo "FAIL: setting up the test users: $(id otagw-ctl)"
	exit 1
}

# ---- a private bus with the system bus's default policy, including io.otagw.conf ----

cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <!-- As /usr/share/dbus-1/system.conf: deny owning names and method calls unless allowed. -->
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>$policy</include>
</busconfig>
EOF
dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 \
	3>"$tmp/address" 2>"$tmp/dbus.log" &
bus_pid=$!
for _ in $(seq 100); do
	[ -s "$tmp/address" ] && break
	sleep 0.1
done
if [ ! -s "$tmp/address" ]; then
	echo "FAIL: dbus-daemon did not start with $policy:"
	cat "$tmp/dbus.log"
	exit 1
fi
address=$(head -n1 "$tmp/address")
# dbus-daemon warns about unknown users or groups, and refuses malformed files, at load time.
if grep -Ei 'unknown|invalid|error|io\.otagw' "$tmp/dbus.log" | grep -v 'fd limit'; then
	echo "FAIL: dbus-daemon complained about the configuration (above)"
	exit 1
fi
echo "ok: dbus-daemon loads $policy"

# ---- the checks ----

failures=0
# expect ok|denied WHO DESCRIPTION -- BUSCTL-ARGUMENTS...
expect() {
	local want=$1 who=$2 what=$3 out rc=0
	shift 4
	if [ "$who" = root ]; then
		out=$(busctl --address="$address" --timeout=10 "$@" 2>&1) || rc=$?
	else
		out=$("$here/run-as.sh" "$who" -- busctl --address="$address" --timeout=10 "$@" \
			2>&1) || rc=$?
	fi
	if [ "$want" = ok ] && [ $rc -eq 0 ]; then
		echo "ok: $who may $what"
	elif [ "$want" = denied ] && [ $rc -ne 0 ] && [[ $out == *"Access denied"* ]]; then
		echo "ok: $who may not $what"
	else
		echo "FAIL: $who $what: expected $want, got exit $rc: $out"
		failures=$((failures + 1))
	fi
}

m=(call io.otagw /io/otagw io.otagw.Manager1)
props=(call io.otagw /io/otagw org.freedesktop.DBus.Properties)
log=(call io.otagw /org/freedesktop/LogControl1 org.freedesktop.DBus.Properties)
own=(call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus RequestName su
	io.otagw 4) # DBUS_NAME_FLAG_DO_NOT_QUEUE

for who in root otagw-ctl nobody; do
	expect denied "$who" "own io.otagw" -- "${own[@]}"
done

"$here/run-as.sh" otagw -- "$holder_bin" "$address" io.otagw >"$tmp/holder.out" \
	2>"$tmp/holder.err" &
holder_pid=$!
for _ in $(seq 100); do
	grep -q ready "$tmp/holder.out" 2>/dev/null && break
	kill -0 "$holder_pid" 2>/dev/null || break
	sleep 0.1
done
if ! grep -q ready "$tmp/holder.out"; then
	echo "FAIL: user otagw could not own io.otagw: $(cat "$tmp/holder.err")"
	exit 1
fi
echo "ok: otagw may own io.otagw"

for who in nobody otagw-ctl root; do
	expect ok "$who" "introspect" -- call io.otagw /io/otagw \
		org.freedesktop.DBus.Introspectable Introspect
	expect ok "$who" "ping" -- call io.otagw /io/otagw org.freedesktop.DBus.Peer Ping
	expect ok "$who" "get a property" -- "${props[@]}" Get ss io.otagw.Manager1 State
	expect ok "$who" "get all properties" -- "${props[@]}" GetAll s io.otagw.Manager1
	expect ok "$who" "list the objects" -- call io.otagw /io/otagw \
		org.freedesktop.DBus.ObjectManager GetManagedObjects
	expect ok "$who" "look up a device" -- "${m[@]}" GetDevice s GW-0042
	expect ok "$who" "read the history" -- "${m[@]}" GetHistory su "" 10
	expect ok "$who" "read the log level" -- "${log[@]}" Get ss org.freedesktop.LogControl1 \
		LogLevel
done

for who in otagw-ctl root nobody; do
	want=ok
	[ "$who" = nobody ] && want=denied
	expect $want "$who" "call CheckNow" -- "${m[@]}" CheckNow s GW-0042
	expect $want "$who" "call CheckAll" -- "${m[@]}" CheckAll
	expect $want "$who" "call Abort" -- "${m[@]}" Abort s GW-0042
	expect $want "$who" "call PurgeCache" -- "${m[@]}" PurgeCache
	expect $want "$who" "set the log level" -- "${log[@]}" Set ssv \
		org.freedesktop.LogControl1 LogLevel s debug
	expect $want "$who" "set a property" -- "${props[@]}" Set ssv io.otagw.Manager1 State \
		s running
	expect $want "$who" "call a method the API does not have" -- "${m[@]}" Reboot
done

if [ $failures -gt 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "all D-Bus policy checks passed"
