#!/usr/bin/env bash
# Creates a virtualenv with the official dreadnode SDK's HTTP client at $1 (default
# target/sdk-venv) and prints its python, for FLEETLEDGER_TEST_PYTHON. The SDK goes in
# without its dependencies (the client needs only those in requirements.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../python_venv.sh" "${1:-$here/../../target/sdk-venv}" "$here/requirements.txt" \
    'import dreadnode.app.api.client' dreadnode==2.0.52
