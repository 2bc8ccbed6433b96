#!/usr/bin/env bash
# run-as.sh: runs a command as another, unprivileged user, for tests that check what such a user
# may and may not do (D-Bus policy, file permissions). The user's groups come from the user
# database, as for a login; the environment is kept (bus addresses, TMPDIR). Needs root, and
# exits 77 (CTest's "skipped", see SKIP_RETURN_CODE) otherwise.
# Usage: run-as.sh [USER] -- COMMAND [ARGUMENT...]       (USER: a name or uid; default nobody)
set -euo pipefail

user=nobody
if [ $# -gt 0 ] && [ "$1" != -- ]; then
	user=$1
	shift
fi
if [ $# -lt 2 ] || [ "$1" != -- ]; then
	echo "Usage: run-as.sh [USER] -- COMMAND [ARGUMENT...]" >&2
	exit 2
fi
shift
if [ "$(id -u)" -ne 0 ]; then
	echo "run-as.sh: must run as root to switch to $user; skipping" >&2
	exit 77
fi
if ! group=$(id -gn "$user" 2>/dev/null); then
	echo "run-as.sh: no user $user" >&2
	exit 2
fi
# setpriv, not su/runuser: no PAM session, no login shell, nothing but the credentials change.
# Leaving uid 0 clears the capabilities.
exec setpriv --reuid="$user" --regid="$group" --init-groups -- "$@"
