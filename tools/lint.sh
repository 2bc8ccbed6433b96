#!/usr/bin/env bash
# Static analysis of otagw's own C sources: cppcheck, then clang-tidy (checks in .clang-tidy),
# over the compile commands of a configured (not built) tree. Exits non-zero on any finding, so
# CI can run it as a step. False positives are silenced where they stand, with a reason:
# `// NOLINT(check): why` or `// cppcheck-suppress id` on the line above.
# Usage: bash tools/lint.sh [--tests]
#   --tests: also lint tests/ (off by default: the test code is held to a looser bar).
# Environment: LINT_BUILD_DIR (default build-lint), LINT_JOBS (default 2).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${LINT_BUILD_DIR:-$top/build-lint}
jobs=${LINT_JOBS:-2}
dirs="proto|db|daemon|transports|tools|bench"
if [ "${1:-}" = "--tests" ]; then
	dirs="$dirs|tests"
elif [ $# -gt 0 ]; then
	echo "usage: bash tools/lint.sh [--tests]" >&2
	exit 2
fi
for tool in cmake jq cppcheck clang-tidy; do
	command -v "$tool" >/dev/null || {
		echo "lint: $tool not found (bash tools/deps.sh installs it)" >&2
		exit 1
	}
done

# Debug, so assert() and the code behind !NDEBUG are what the analysers see.
cmake -S "$top" -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_BUILD_TYPE=Debug \
	>/dev/null
# Only our sources; the database is written to a folder of its own so that clang-tidy -p and
# cppcheck --project see exactly this list.
db="$build/lint"
mkdir -p "$db"
jq --arg top "$top/" --arg re "^($dirs)/" \
	'[.[] | select((.file | ltrimstr($top)) | test($re))]' \
	"$build/compile_commands.json" >"$db/compile_commands.json"
nfiles=$(jq length "$db/compile_commands.json")
status=0

echo "=== cppcheck ($nfiles files) ==="
# cppcheck reads no system headers. sys/queue.h is forced in because its macros shape our
# structs, and tools/lint/cppcheck.cfg spells out the jansson and sd-bus macros used as
# statements; without them cppcheck stops at a "syntax error" and checks nothing in the file.
# readdirCalled: it recommends readdir_r, which glibc deprecates; readdir on a stream of one's
# own is thread-safe, and otagwd is single-threaded anyway.
cppcheck --project="$db/compile_commands.json" -j"$jobs" --quiet \
	--enable=warning,performance,portability --inline-suppr --error-exitcode=1 \
	--include=/usr/include/x86_64-linux-gnu/sys/queue.h \
	--library=posix --library=gnu --library=libcurl --library=openssl --library=sqlite3 \
	--library="$top/tools/lint/cppcheck.cfg" \
	--suppress=missingIncludeSystem --suppress='*:/usr/include/*' --suppress=readdirCalled \
	--template='{file}:{line}:{column}: {severity}: {message} [{id}]' || status=1

echo "=== clang-tidy ($nfiles files, -j$jobs) ==="
# Each run prints "N warnings generated." for what it filtered out (system headers, checks that
# are off); only real diagnostics are kept. A header's finding repeats once per file that
# includes it; the count at the end is of distinct findings.
out="$db/clang-tidy.log"
set +e
jq -r '.[].file' "$db/compile_commands.json" |
	xargs -P "$jobs" -n 4 clang-tidy -p "$db" --quiet --warnings-as-errors='*' >"$out" \
		2> >(grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed|^Use -header-filter|^Use -system-headers' >&2)
tidy=$?
set -e
cat "$out"
findings=$(grep -c -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' "$out" || true)
unique=$({ grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' "$out" || true; } | sort -u | wc -l)
if [ "$tidy" -ne 0 ] || [ "$unique" -ne 0 ]; then
	echo "clang-tidy: $unique distinct findings ($findings reported)" >&2
	status=1
fi

if [ "$status" -eq 0 ]; then
	echo "lint: clean"
else
	echo "lint: findings above (fix them, or silence a false positive with a reason)" >&2
fi
exit "$status"
