#!/usr/bin/env bash
# Makes (or reuses) the virtualenv at $1 with the requirements file $2, in which the Python
# statement $3 must run, and prints its python. Further arguments are packages installed
# first without their dependencies. Shared by the test suites' setup.sh scripts.
set -euo pipefail
venv="$1" requirements="$2" check="$3"
shift 3
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
    log="$(mktemp)"
    # pip reports the dependencies of a package installed without them as conflicts; keep
    # its output for a real failure only.
    if ! { python3 -m venv "$venv" \
        && { [ $# -eq 0 ] || "$venv/bin/pip" install --disable-pip-version-check --no-deps "$@"; } \
        && "$venv/bin/pip" install --disable-pip-version-check -r "$requirements" \
        && "$venv/bin/python" -c "$check"; } >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
fi
echo "$(cd "$venv" && pwd)/bin/python"
