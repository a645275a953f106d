#!/usr/bin/env bash
# What `aether mcp-serve --http` costs per MCP call, measured from outside with a C client: each
# binary given (default: the release build) serves `builtin.echo` on one worker thread
# (`--worker-threads 1 --tool-latency-ms 0`), and `wrk -t1 -c1` POSTs one stateless `tools/call`
# (MCP 2026-07-28: the client context in `_meta`, `MCP-Protocol-Version`, `Mcp-Method`,
# `Mcp-Name`) for DURATION seconds on one connection. Printed per binary and round: the calls
# made, wrk's p50 latency, and the server's own CPU per call (user + system from
# /proc/PID/stat over the run, divided by the calls). ROUNDS rounds alternate the binaries,
# each against a fresh server: compare two builds side by side, as ratios, on a noisy machine.
# Usage: scripts/mcp-serve-cost.sh [AETHER_BINARY...]   (DURATION=5, ROUNDS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
bins=("${@:-target/release/aether}")
for b in "${bins[@]}"; do
  [[ -x $b ]] || { echo "$b missing: cargo build --release -p aether-cli" >&2; exit 2; }
done
work=$(mktemp -d); server=""
trap '[[ -n $server ]] && kill $server 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/call.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"builtin.echo","arguments":{"message":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "builtin.echo"
LUA
ticks=$(getconf CLK_TCK)
printf '| binary | round | calls | wrk p50 | server CPU µs per call |\n|---|---|---|---|---|\n'
for round in $(seq "$ROUNDS"); do
  for b in "${bins[@]}"; do
    : > "$work/serve.out"
    "$b" --worker-threads 1 mcp-serve --http 127.0.0.1:0 --allow-anonymous --tool-latency-ms 0 \
      >"$work/serve.out" 2>/dev/null & server=$!
    until grep -q 'http://' "$work/serve.out"; do sleep 0.1; done
    url=$(grep -o 'http://[0-9.:]*/mcp' "$work/serve.out" | head -1)
    before=$(awk '{print $14 + $15}' "/proc/$server/stat")
    out=$(wrk -t1 -c1 -d"${DURATION}s" --latency -s "$work/call.lua" "$url")
    after=$(awk '{print $14 + $15}' "/proc/$server/stat")
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    calls=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    cpu=$(awk -v t="$((after - before))" -v hz="$ticks" -v n="$calls" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}')
    printf '| %s | %s | %s | %s | %s |\n' "$b" "$round" "$calls" "$p50" "$cpu"
  done
done
