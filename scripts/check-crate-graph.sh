#!/usr/bin/env bash
# The crate graph's rules (docs/architecture.md, "Crate graph"): the client library never links
# the server, SQLite or nix; the wire contract never links tokio; the tunnel's device side
# (`claw-tunnel` without its `gateway` feature) never links the gateway. Fails naming what leaked in.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # crate, forbidden names (regex over `cargo tree` lines), extra `cargo tree` flags
  local crate=$1 forbidden=$2 leaked
  shift 2
  leaked=$(cargo tree --locked -p "$crate" "$@" -e normal --prefix none | awk '{print $1}' \
    | grep -Ex "$forbidden" | sort -u || true)
  if [ -n "$leaked" ]; then
    echo "crate graph: $crate depends on $(echo "$leaked" | tr '\n' ' ')"
    fail=1
  else
    echo "crate graph: $crate${1:+ ($*)} is free of $forbidden"
  fi
}
check relay-client 'rusqlite|libsqlite3-sys|nix|claw-gateway|claw-tunnel'
check claw-proto 'tokio|tokio-tungstenite|rusqlite|libsqlite3-sys|nix|claw-gateway|quinn|russh'
check claw-tunnel 'rusqlite|libsqlite3-sys|claw-gateway' --no-default-features
check claw-home 'tokio|rusqlite|libsqlite3-sys|claw-gateway'
exit $fail
