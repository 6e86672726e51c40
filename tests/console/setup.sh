#!/usr/bin/env bash
# Creates a virtualenv with Playwright for Python at $1 (default target/console-venv) and
# prints its python, for FLEETLEDGER_TEST_PLAYWRIGHT. The browser is the system's Chromium
# (/usr/bin/chromium); Playwright's own browser downloads are not used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../python_venv.sh" "${1:-$here/../../target/console-venv}" "$here/requirements.txt" \
    'import playwright.sync_api'
