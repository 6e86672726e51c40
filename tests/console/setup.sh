#!/usr/bin/env bash
# Creates a virtualenv with Playwright for Python at $1 (default target/console-venv) and
# prints its python, for FLEETLEDGER_TEST_PLAYWRIGHT. The browser is the system's Chromium
# (/usr/bin/chromium); Playwright's own browser downloads are not used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../../target/console-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import playwright.sync_api" >/dev/null 2>&1; then
    log="$(mktemp)"
    if ! { python3 -m venv "$venv" \
        && "$venv/bin/pip" install --disable-pip-version-check -r "$here/requirements.txt" \
        && "$venv/bin/python" -c "import playwright.sync_api"; } >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
fi
echo "$(cd "$venv" && pwd)/bin/python"
