#!/usr/bin/env bash
# Interop check, called by scripts/interop-openclaw.sh (which installs Node 24 and openclaw, puts
# them on PATH and starts the gateway): the real `openclaw node run` and the real `openclaw` CLI
# on a device home with NO token anywhere, through `claw tunnel up` and through claw's SSH
# forward (stock `ssh -N -L` with the device's own key), keep working across
# `claw devices rotate-token --force`, and are cut when the device is revoked.
#
#   bash scripts/interop-notoken.sh CLAW GW_HOME WORKDIR WS_PORT
#
# Writes one line per check to WORKDIR/results (`PASS|name|` or `FAIL|name|why`) and prints what
# the clients logged for a failed check. Everything it starts runs in a process group of its own
# (setsid) and is stopped on exit.
set -uo pipefail

CLAW=$1
GW_HOME=$2
W=$3
PORT=$4
CALL_TIMEOUT=${INTEROP_CALL_TIMEOUT:-60}
SLOW_TIMEOUT=$((CALL_TIMEOUT + 60))
# The node host takes a while to start (it loads its plugins first).
NODE_START=${INTEROP_NODE_START:-180}

unset OPENCLAW_GATEWAY_TOKEN OPENCLAW_GATEWAY_PASSWORD OPENCLAW_GATEWAY_URL
export DO_NOT_TRACK=1 OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_DISABLE_BONJOUR=1

rm -rf "$W"
mkdir -p "$W"
RESULTS=$W/results
: >"$RESULTS"
STARTED=()

cleanup() {
  for g in ${STARTED[@]+"${STARTED[@]}"}; do
    kill -TERM -- "-$g" 2>/dev/null || true
  done
  for g in ${STARTED[@]+"${STARTED[@]}"}; do
    for _ in $(seq 50); do
      kill -0 -- "-$g" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$g" 2>/dev/null || true
  done
}
trap cleanup EXIT

# start NAME COMMAND...: runs COMMAND in a new process group, output in $W/NAME.{out,err};
# sets STARTED_PID (the group id).
start() {
  local name=$1
  shift
  setsid "$@" </dev/null >"$W/$name.out" 2>"$W/$name.err" &
  STARTED_PID=$!
  STARTED+=("$STARTED_PID")
}

result() { # result PASS|FAIL NAME [WHY] [LOG...]
  local verdict=$1 name=$2 why=${3:-}
  shift 3 2>/dev/null || shift $#
  echo "$verdict|$name|$why" >>"$RESULTS"
  if [ "$verdict" = FAIL ]; then
    for f in "$@"; do
      [ -s "$f" ] || continue
      echo "  --- $f"
      grep -v 'publish failed' "$f" | tail -n 15 | sed 's/^/  | /'
    done
  fi
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.5 s until it succeeds or SECONDS pass.
wait_for() {
  local secs=$1
  shift
  local end=$((SECONDS + secs))
  while [ "$SECONDS" -lt "$end" ]; do
    "$@" && return 0
    sleep 0.5
  done
  return 1
}

lines() { grep -c -- "$2" "$1" 2>/dev/null || true; }
# A child this script has not reaped is a zombie to kill -0: look at its state instead.
alive() { [ -r "/proc/$1/stat" ] && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat"; }

# --- a device home: pairs through the tunnel, tunnel up, the SSH forward with its own key --------
DEV=$W/device
mkdir -p "$DEV"
URI=$("$CLAW" --home "$GW_HOME" pair --json --no-qr 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{process.stdout.write(JSON.parse(s).uri)}catch{}})')
if [ -z "$URI" ] || ! "$CLAW" --home "$DEV" tunnel pair "$URI" >"$W/pair.out" 2>&1; then
  result FAIL "no-token device: pair" "claw pair / claw tunnel pair failed" "$W/pair.out"
  exit 0
fi
start tunnel "$CLAW" --home "$DEV" tunnel up --listen 127.0.0.1:0
TUP=$STARTED_PID
TPORT=
tport() { TPORT=$(sed -n 's#^claw tunnel up: ws://127\.0\.0\.1:\([0-9][0-9]*\) .*#\1#p' "$W/tunnel.out" | head -n1); [ -n "$TPORT" ]; }
if ! wait_for 30 tport; then
  result FAIL "no-token device: claw tunnel up" "no listening line" "$W/tunnel.out" "$W/tunnel.err"
  exit 0
fi
DEVICE_ID=$("$CLAW" --home "$DEV" tunnel status --json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{process.stdout.write(JSON.parse(s).deviceId||"")}catch{}})')
[ -n "$DEVICE_ID" ] || DEVICE_ID=$(sed -n 's/.* as device \([0-9a-f]*\);.*/\1/p' "$W/pair.out")

SSH_ADDR=$(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));process.stdout.write((j.ssh&&j.ssh.addr)||"")' "$GW_HOME/gateway.json" 2>/dev/null)
SSH_PORT=${SSH_ADDR##*:}
SPORT=
if command -v ssh >/dev/null 2>&1 && [ -n "$SSH_PORT" ] \
  && "$CLAW" --home "$DEV" tunnel export-ssh-key --port "$SSH_PORT" >"$W/export.out" 2>&1; then
  LPORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})')
  start ssh ssh -F /dev/null -p "$SSH_PORT" -i "$DEV/id_ed25519_claw" -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$DEV/known_hosts" -o BatchMode=yes -o IdentitiesOnly=yes \
    -o ExitOnForwardFailure=yes -N -L "$LPORT:127.0.0.1:$PORT" claw@127.0.0.1
  port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$LPORT") 2>/dev/null; }
  wait_for 30 port_open && SPORT=$LPORT
fi
if [ -z "$SPORT" ]; then
  result FAIL "no-token device: claw's SSH forward with the device's key" "ssh -N -L did not come up" "$W/export.out" "$W/ssh.err"
fi

# --- the clients -------------------------------------------------------------------------------
# The CLI: its config says the gateway wants no client secret (the transport authenticates).
cli_home() { # cli_home DIR
  mkdir -p "$1"
  HOME=$1 timeout "$CALL_TIMEOUT" openclaw config set gateway.auth.mode none >/dev/null 2>&1
}
cli() { # cli NAME HOME PORT ARGS...: the real CLI, no token; rc in CLI_RC, output in $W/NAME.*
  local name=$1 home=$2 port=$3
  shift 3
  HOME=$home OPENCLAW_GATEWAY_PORT=$port timeout "$SLOW_TIMEOUT" openclaw "$@" >"$W/$name.out" 2>"$W/$name.err"
  CLI_RC=$?
}
health_ok() { grep -q '"ok": *true' "$W/$1.out"; }

VIAS=(tunnel)
declare -A VIA_PORT=([tunnel]=$TPORT)
if [ -n "$SPORT" ]; then
  VIAS+=(ssh)
  VIA_PORT[ssh]=$SPORT
fi
declare -A NODE_PID
for via in "${VIAS[@]}"; do
  mkdir -p "$W/node-$via-home" && cli_home "$W/cli-$via-home"
  start "node-$via" env HOME="$W/node-$via-home" openclaw node run --host 127.0.0.1 \
    --port "${VIA_PORT[$via]}" --display-name "notoken-$via"
  NODE_PID[$via]=$STARTED_PID
done

node_connected() { [ "$(lines "$W/node-$1.err" 'node host gateway connected')" -ge 1 ]; }
for via in "${VIAS[@]}"; do
  if wait_for "$NODE_START" node_connected "$via"; then
    result PASS "openclaw node run through $via with no token reaches hello-ok"
  else
    result FAIL "openclaw node run through $via with no token reaches hello-ok" \
      "no 'node host gateway connected' within ${NODE_START}s" "$W/node-$via.out" "$W/node-$via.err"
  fi
  cli "cli-$via-health" "$W/cli-$via-home" "${VIA_PORT[$via]}" gateway call health --json
  if [ "$CLI_RC" = 0 ] && health_ok "cli-$via-health"; then
    result PASS "openclaw gateway call health through $via with no token"
  else
    result FAIL "openclaw gateway call health through $via with no token" "rc=$CLI_RC" "$W/cli-$via-health.out" "$W/cli-$via-health.err"
  fi
  # A non-read-only call: the CLI signs with a key of its own (a sub-identity of the device).
  cli "cli-$via-presence" "$W/cli-$via-home" "${VIA_PORT[$via]}" system presence --json
  if [ "$CLI_RC" = 0 ]; then
    result PASS "openclaw system presence (signed with the CLI's own key) through $via with no token"
  else
    result FAIL "openclaw system presence (signed with the CLI's own key) through $via with no token" "rc=$CLI_RC" "$W/cli-$via-presence.out" "$W/cli-$via-presence.err"
  fi
done

# The node hosts are recorded as sub-identities of the device.
"$CLAW" --home "$GW_HOME" devices list --json >"$W/devices.json" 2>"$W/devices.err"
if node -e '
  const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const d = j.paired.find(d => d.deviceId === process.argv[2]);
  const subs = (d && d.subIdentities) || [];
  process.exit(subs.some(s => s.client === "node-host/node" && s.role === "node") ? 0 : 1);
' "$W/devices.json" "$DEVICE_ID"; then
  result PASS "the node host is listed as a sub-identity of the device"
else
  result FAIL "the node host is listed as a sub-identity of the device" "no node-host/node under device $DEVICE_ID" "$W/devices.json"
fi

# --- a forced root rotation: nothing on the device goes stale ----------------------------------
declare -A BEFORE
for via in "${VIAS[@]}"; do
  BEFORE[$via]=$(lines "$W/node-$via.err" 'gateway closed')
done
"$CLAW" --home "$GW_HOME" devices rotate-token --force >"$W/rotate.out" 2>&1 ||
  result FAIL "claw devices rotate-token --force" "failed" "$W/rotate.out"
tunnel_connected() { "$CLAW" --home "$DEV" tunnel status --json 2>/dev/null | grep -q '"connected":true'; }
wait_for 30 tunnel_connected
for via in "${VIAS[@]}"; do
  # Proof of life after the rotation, through the same device port.
  cli "cli-$via-health-after" "$W/cli-$via-home" "${VIA_PORT[$via]}" gateway call health --json
  if [ "$CLI_RC" = 0 ] && health_ok "cli-$via-health-after"; then
    result PASS "openclaw gateway call health through $via with no token after rotate-token --force"
  else
    result FAIL "openclaw gateway call health through $via with no token after rotate-token --force" "rc=$CLI_RC" "$W/cli-$via-health-after.out" "$W/cli-$via-health-after.err"
  fi
  cli "cli-$via-presence-after" "$W/cli-$via-home" "${VIA_PORT[$via]}" system presence --json
  if [ "$CLI_RC" = 0 ]; then
    result PASS "openclaw system presence through $via with no token after rotate-token --force"
  else
    result FAIL "openclaw system presence through $via with no token after rotate-token --force" "rc=$CLI_RC" "$W/cli-$via-presence-after.out" "$W/cli-$via-presence-after.err"
  fi
  # The node host's socket was never closed (it logs every close) and it is still running.
  if [ "$(lines "$W/node-$via.err" 'gateway closed')" = "${BEFORE[$via]}" ] && node_connected "$via" \
    && alive "${NODE_PID[$via]}"; then
    result PASS "openclaw node run through $via stays connected across rotate-token --force"
  else
    result FAIL "openclaw node run through $via stays connected across rotate-token --force" \
      "its gateway socket closed after the rotation" "$W/node-$via.err"
  fi
done

# --- revoked: the device's clients are cut -----------------------------------------------------
"$CLAW" --home "$GW_HOME" devices revoke "$DEVICE_ID" --yes >"$W/revoke.out" 2>&1 ||
  result FAIL "claw devices revoke (the no-token device)" "failed" "$W/revoke.out"
node_cut() { [ "$(lines "$W/node-$1.err" 'gateway closed')" -gt "${BEFORE[$1]}" ]; }
for via in "${VIAS[@]}"; do
  if wait_for 30 node_cut "$via"; then
    result PASS "openclaw node run through $via is cut when the device is revoked"
  else
    result FAIL "openclaw node run through $via is cut when the device is revoked" \
      "no 'gateway closed' within 30 s of the revoke" "$W/node-$via.err"
  fi
  cli "cli-$via-revoked" "$W/cli-$via-home" "${VIA_PORT[$via]}" gateway call health --json
  if [ "$CLI_RC" != 0 ]; then
    result PASS "openclaw gateway call health through $via is refused once the device is revoked"
  else
    result FAIL "openclaw gateway call health through $via is refused once the device is revoked" "rc=0" "$W/cli-$via-revoked.out"
  fi
done
tunnel_gone() { ! alive "$TUP"; }
if wait_for 30 tunnel_gone; then
  result PASS "claw tunnel up stops when its device is revoked"
else
  result FAIL "claw tunnel up stops when its device is revoked" "still running 30 s after the revoke" "$W/tunnel.err"
fi
exit 0
