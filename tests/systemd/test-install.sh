#!/usr/bin/env bash
# Where `cmake --install` puts every file, checked against the FHS and the places systemd,
# dbus-daemon, man and bash-completion read them from:
#  1. the build under test, installed into a DESTDIR: each file of the list below where it
#     belongs for the configured prefix, nothing anywhere else, sane modes; the installed unit
#     passes `systemd-analyze verify` with the installed man pages; the installed sysusers.d and
#     tmpfiles.d files applied to the DESTDIR (--root) create the otagw user and a 0750
#     root:otagw /etc/otagw, and lock the key file down to 0600;
#  2. the source configured afresh with the /usr prefix a distribution package uses: the
#     systemd, doc and completion components land in /usr/lib/systemd/system,
#     /usr/share/dbus-1/system.d and so on, and the unit runs /usr/sbin/otagwd.
# Usage: test-install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "Usage: test-install.sh BUILD_DIR SOURCE_DIR" >&2
	exit 2
fi
build=$(realpath "$1")
src=$(realpath "$2")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/otagw-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
prefix=$(cache CMAKE_INSTALL_PREFIX)
# GNUInstallDirs: the /usr prefix keeps its configuration in /etc, others in PREFIX/etc.
if [ "$prefix" = /usr ]; then sysconf=/etc; else sysconf=$prefix/etc; fi
man_built=no
[ -n "$(cache SCDOC)" ] && [ "$(cache SCDOC)" != SCDOC-NOTFOUND ] && man_built=yes

# The files of otagw and where they belong; MODE is the permission they must have.
expected() {
	local p=$1 etc=$2 man=$3
	echo "$p/sbin/otagwd 755"
	echo "$etc/otagw/otagw.conf 644"
	echo "$p/lib/systemd/system/otagwd.service 644"
	echo "$p/lib/sysusers.d/otagw.conf 644"
	echo "$p/lib/tmpfiles.d/otagw.conf 644"
	echo "$p/lib/modules-load.d/otagw.conf 644"
	echo "$p/share/dbus-1/system.d/io.otagw.conf 644"
	echo "$p/share/bash-completion/completions/otagwctl 644"
	echo "$p/share/doc/otagw/dbus-api.md 644"
	if [ "$man" = yes ]; then
		echo "$p/share/man/man8/otagwd.8 644"
		echo "$p/share/man/man5/otagw.conf.5 644"
		echo "$p/share/man/man1/otagwctl.1 644"
	fi
}

# check_tree DESTDIR LIST: every file of LIST (path mode) is in DESTDIR with its mode.
check_tree() {
	local dest=$1 list=$2 path mode got
	while read -r path mode; do
		if [ ! -f "$dest$path" ]; then
			fail "$path was not installed"
			continue
		fi
		got=$(stat -c %a "$dest$path")
		[ "$got" = "$mode" ] || fail "$path has mode $got, expected $mode"
	done <<<"$list"
}

# ---- 1. the build under test, prefix $prefix ----

dest=$tmp/dest
DESTDIR=$dest cmake --install "$build" >"$tmp/install.log" 2>&1 || {
	cat "$tmp/install.log"
	fail "cmake --install $build"
	exit 1
}
list=$(expected "$prefix" "$sysconf" "$man_built")
before=$failures
check_tree "$dest" "$list"
# An upgrade (installing again) keeps the operator's configuration.
echo "# edited by the operator" >>"$dest$sysconf/otagw/otagw.conf"
if ! DESTDIR=$dest cmake --install "$build" >"$tmp/install2.log" 2>&1; then
	cat "$tmp/install2.log"
	fail "cmake --install $build, a second time"
elif ! grep -q "edited by the operator" "$dest$sysconf/otagw/otagw.conf"; then
	fail "installing again replaced the operator's $sysconf/otagw/otagw.conf"
elif ! grep -q "Keeping: .*otagw.conf" "$tmp/install2.log"; then
	fail "installing again kept $sysconf/otagw/otagw.conf without saying so"
fi
# Whatever else gets installed (other parts of otagw add programs) must stay in the usual
# places: programs in bin/sbin/libexec, data under lib/ and share/, configuration in
# SYSCONFDIR/otagw; nothing writable by others.
while read -r f; do
	path=${f#"$dest"}
	grep -q "^$path " <<<"$list" && continue
	case $path in
	"$prefix"/bin/* | "$prefix"/sbin/* | "$prefix"/libexec/* | "$prefix"/lib/* | \
		"$prefix"/share/* | "$sysconf"/otagw/*) ;;
	*) fail "$path is installed outside the FHS places for prefix $prefix" ;;
	esac
	[ -n "$(find "$f" -perm /022)" ] && fail "$path is writable by group or others"
done < <(find "$dest" -type f -o -type l)
if [ $failures -eq "$before" ]; then
	echo "ok: cmake --install (prefix $prefix) installs:"
	sed 's/^/  /' <<<"$list"
fi

unit=$dest$prefix/lib/systemd/system/otagwd.service
if [ -f "$unit" ]; then
	grep -qx "ExecStart=$prefix/sbin/otagwd" "$unit" ||
		fail "the installed unit does not run $prefix/sbin/otagwd: $(grep ExecStart= "$unit")"
	# verify needs ExecStart= to exist: point it into the DESTDIR; the man pages too.
	mkdir "$tmp/unit"
	sed "s|^ExecStart=.*|ExecStart=$dest$prefix/sbin/otagwd|" "$unit" >"$tmp/unit/otagwd.service"
	man_opt=--man=no
	if [ "$man_built" = yes ]; then
		man_opt=--man=yes
		export MANPATH=$dest$prefix/share/man
	fi
	if out=$(systemd-analyze verify "$man_opt" "$tmp/unit/otagwd.service" 2>&1) &&
		[ -z "$out" ]; then
		echo "ok: the installed unit passes systemd-analyze verify $man_opt"
	else
		fail "systemd-analyze verify on the installed unit: $out"
	fi
fi

# sysusers.d and tmpfiles.d applied to the DESTDIR as the root directory. The key file is
# planted readable by all, to see tmpfiles lock it down.
mkdir -p "$dest/etc/otagw"
echo 0123456789abcdef0123456789abcdef >"$dest/etc/otagw/project-key"
chmod 0644 "$dest/etc/otagw/project-key"
if [ "$(id -u)" -ne 0 ]; then
	echo "note: not root, sysusers.d and tmpfiles.d not applied (they set root ownership)"
elif ! out=$(systemd-sysusers --root="$dest" "$dest$prefix/lib/sysusers.d/otagw.conf" 2>&1); then
	fail "systemd-sysusers --root: $out"
elif ! grep -qE '^otagw:x:[0-9]+:[0-9]+:[^:]*:/var/lib/otagw:/usr/sbin/nologin$' \
	"$dest/etc/passwd"; then
	fail "sysusers did not create the system user otagw as expected: $(cat "$dest/etc/passwd")"
elif ! grep -q '^bluetooth:' "$dest/etc/group"; then
	fail "sysusers did not create the group bluetooth (SupplementaryGroups= needs it)"
else
	uid=$(awk -F: '$1 == "otagw" { print $3 }' "$dest/etc/passwd")
	[ "$uid" -lt 1000 ] || fail "otagw has uid $uid, not a system uid"
	echo "ok: sysusers creates the system user otagw (uid $uid) and groups otagw, bluetooth"
fi
if [ "$(id -u)" -ne 0 ]; then
	: # see above
elif ! out=$(systemd-tmpfiles --root="$dest" --create \
	"$dest$prefix/lib/tmpfiles.d/otagw.conf" 2>&1); then
	fail "systemd-tmpfiles --root --create: $out"
else
	gid=$(awk -F: '$1 == "otagw" { print $3 }' "$dest/etc/group")
	got=$(stat -c '%a %u %g' "$dest/etc/otagw")
	[ "$got" = "750 0 $gid" ] || fail "/etc/otagw is '$got', expected '750 0 $gid' (root:otagw)"
	got=$(stat -c %a "$dest/etc/otagw/project-key")
	[ "$got" = 600 ] || fail "/etc/otagw/project-key has mode $got after tmpfiles, expected 600"
	[ "$got" = 600 ] && echo "ok: tmpfiles makes /etc/otagw 0750 root:otagw, the key file 0600"
fi

# ---- 2. the same sources configured for /usr, as a distribution builds them ----

usr=$tmp/usr-build
if ! cmake -S "$src" -B "$usr" -DCMAKE_INSTALL_PREFIX=/usr >"$tmp/configure.log" 2>&1; then
	cat "$tmp/configure.log"
	fail "configuring $src with the /usr prefix"
else
	[ "$man_built" = yes ] && cmake --build "$usr" --target man >/dev/null
	for component in systemd doc completion; do
		DESTDIR=$tmp/usr-dest cmake --install "$usr" --component "$component" >/dev/null ||
			fail "cmake --install --component $component (prefix /usr)"
	done
	# The programs and the configuration are other components; the rest must be in place.
	before=$failures
	list=$(expected /usr /etc "$man_built" | grep -v -e '^/usr/sbin/otagwd ' \
		-e '^/etc/otagw/otagw.conf ')
	check_tree "$tmp/usr-dest" "$list"
	grep -qx 'ExecStart=/usr/sbin/otagwd' "$tmp/usr-dest/usr/lib/systemd/system/otagwd.service" ||
		fail "the /usr unit does not run /usr/sbin/otagwd"
	n=$(find "$tmp/usr-dest" -type f | wc -l)
	[ "$n" -eq "$(wc -l <<<"$list")" ] || fail "the /usr install has $n files: $(find \
		"$tmp/usr-dest" -type f)"
	if [ $failures -eq "$before" ]; then
		echo "ok: with prefix /usr, the systemd, doc and completion components install:"
		sed 's/^/  /' <<<"$list"
	fi
fi

[ $failures -eq 0 ] && echo "all install checks passed"
[ $failures -eq 0 ]
