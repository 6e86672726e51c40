#!/usr/bin/env bash
# Creates a virtualenv with schemathesis and openapi-python-client at $1 (default
# target/contract-venv) and prints its python, for FLEETLEDGER_TEST_CONTRACT_PYTHON.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../python_venv.sh" "${1:-$here/../../target/contract-venv}" "$here/requirements.txt" \
    'import schemathesis, openapi_python_client, dateutil'
