#!/usr/bin/env bash
# The man pages built from docs/man/*.scd render with man(1) at 80 columns without a single
# groff warning, and otagw.conf(5) documents every section and key daemon/config.c accepts.
# Skipped (exit 77) when the pages were not built (no scdoc).
# Usage: test-man.sh MAN_DIR CONFIG_C OTAGW_CONF_5_SCD
set -euo pipefail

if [ $# -ne 3 ]; then
	echo "Usage: test-man.sh MAN_DIR CONFIG_C OTAGW_CONF_5_SCD" >&2
	exit 2
fi
mandir=$1 config_c=$2 conf_scd=$3
if [ -z "$mandir" ] || [ ! -d "$mandir" ]; then
	echo "SKIP: the man pages were not built (scdoc missing)"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/otagw-man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
for page in man8/otagwd.8 man5/otagw.conf.5 man1/otagwctl.1; do
	if [ ! -s "$mandir/$page" ]; then
		echo "FAIL: $mandir/$page was not built"
		failures=$((failures + 1))
		continue
	fi
	text=$(MANWIDTH=80 man --warnings -l "$mandir/$page" 2>"$tmp/warnings")
	if [ -s "$tmp/warnings" ]; then
		echo "FAIL: man --warnings -l $page:"
		cat "$tmp/warnings"
		failures=$((failures + 1))
	elif ! grep -q '^NAME' <<<"$text" || ! grep -q '^SEE ALSO' <<<"$text"; then
		echo "FAIL: $page rendered without its NAME or SEE ALSO section"
		failures=$((failures + 1))
	else
		echo "ok: $page renders without warnings ($(wc -l <<<"$text") lines)"
	fi
done

# Every key in config.c's tables (PATH("state_dir", ...), UINT(...), CUSTOM(...)...) and every
# section (SECTION("general", ...)) must be described in otagw.conf(5): *key* = and [section].
keys=$(grep -oE '\b(PATH|UINT|DURATION|SIZE|BOOL|ENUM|CUSTOM|LIST)\("[a-z_]+"' "$config_c" |
	sed 's/.*("//; s/"$//' | sort -u)
sections=$(grep -oE '\bSECTION\("[a-z_]+"' "$config_c" | sed 's/.*("//; s/"$//' | sort -u)
if [ -z "$keys" ] || [ -z "$sections" ]; then
	echo "FAIL: found no keys or sections in $config_c; has its table format changed?"
	exit 1
fi
n=0
for key in $keys; do
	n=$((n + 1))
	if ! grep -qE "^\*$key\* =|, \*$key\* =" "$conf_scd"; then
		echo "FAIL: otagw.conf(5) does not document the key $key"
		failures=$((failures + 1))
	fi
done
for section in $sections; do
	if ! grep -qE "^# \[$section( \"NAME\")?\]|^## \[$section \"NAME\"\]" "$conf_scd"; then
		echo "FAIL: otagw.conf(5) has no section for [$section]"
		failures=$((failures + 1))
	fi
done
echo "checked $n keys and $(wc -w <<<"$sections") sections of $config_c against otagw.conf(5)"
[ $failures -eq 0 ]
