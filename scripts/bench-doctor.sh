#!/usr/bin/env bash
# Times `claw doctor` on a healthy home: N runs (default 20) after 2 warm-ups, with the gateway
# running (the run includes a real shared-token connect + health) and stopped.
# Usage: scripts/bench-doctor.sh [CLAW_BINARY] [N]   (default: target/release/claw, 20)
set -euo pipefail
claw=${1:-${CARGO_TARGET_DIR:-target}/release/claw}
n=${2:-20}
home=$(mktemp -d)/home
trap '"$claw" --home "$home" gateway stop >/dev/null 2>&1 || true; rm -rf "$(dirname "$home")"' EXIT

run() { # label
  local times=() t0 t1
  for i in $(seq 1 $((n + 2))); do
    t0=$(date +%s%N)
    "$claw" --home "$home" doctor >/dev/null 2>&1 || { echo "doctor exited non-zero on a healthy home" >&2; exit 1; }
    t1=$(date +%s%N)
    [ "$i" -gt 2 ] && times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$1" -v n="$n" '
    { v[NR] = $1; s += $1 }
    END { printf "%-16s n=%d  min %.1f ms  median %.1f ms  mean %.1f ms  max %.1f ms\n",
          label, n, v[1]/1000, (n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2)/1000, s/n/1000, v[n]/1000 }'
}

"$claw" --home "$home" gateway start --port 0 >/dev/null
run "gateway running"
"$claw" --home "$home" gateway stop >/dev/null
run "gateway stopped"
