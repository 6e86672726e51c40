#!/usr/bin/env bash
# Creates a virtualenv with schemathesis and openapi-python-client at $1 (default
# target/contract-venv) and prints its python, for FLEETLEDGER_TEST_CONTRACT_PYTHON.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../../target/contract-venv}"
check='import schemathesis, openapi_python_client, dateutil'
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
    log="$(mktemp)"
    if ! { python3 -m venv "$venv" \
        && "$venv/bin/pip" install --disable-pip-version-check -r "$here/requirements.txt" \
        && "$venv/bin/python" -c "$check"; } >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
fi
echo "$(cd "$venv" && pwd)/bin/python"
