#!/usr/bin/env bash
# Creates a virtualenv with the official dreadnode SDK's HTTP client at $1 (default
# target/sdk-venv) and prints its python, for FLEETLEDGER_TEST_PYTHON.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../../target/sdk-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import dreadnode.app.api.client" >/dev/null 2>&1; then
    log="$(mktemp)"
    # pip reports the SDK's uninstalled (unneeded) dependencies as conflicts; keep its
    # output for a real failure only.
    if ! { python3 -m venv "$venv" \
        && "$venv/bin/pip" install --disable-pip-version-check --no-deps dreadnode==2.0.52 \
        && "$venv/bin/pip" install --disable-pip-version-check -r "$here/requirements.txt" \
        && "$venv/bin/python" -c "import dreadnode.app.api.client"; } >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
fi
echo "$(cd "$venv" && pwd)/bin/python"
