#!/usr/bin/env bash
# Two builds of `aether` as `--target` load generators, side by side: the harness's own CPU time
# per call (user + system of its process, /usr/bin/time) over a fixed number of requests
# (`perf run --scenario burst_load --target … --worker-threads 1`, two calls a request), each run
# against a fresh `aether serve --time-scale 0 --store memory`, the builds alternated round by
# round. A fixed amount of work makes the CPU time comparable where rates are not; on a shared
# host it still moves 15–20 % between runs, so run both orders (swap A and B) and compare pairs,
# or count instructions instead (callgrind, README).
# Usage: scripts/target-cpu-ab.sh A_BINARY B_BINARY   (env: ROUNDS, default 4; REQUESTS, default
#        60000; CONCURRENCY, default 16; SERVER, the binary that serves, default A_BINARY)
set -euo pipefail
cd "$(dirname "$0")/.."
(( $# == 2 )) || { echo "usage: $0 A_BINARY B_BINARY" >&2; exit 2; }
for b in "$@"; do [[ -x $b ]] || { echo "$b is not an executable" >&2; exit 2; }; done
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is not installed (apt-get install time)" >&2; exit 2; }
ROUNDS=${ROUNDS:-4}; REQUESTS=${REQUESTS:-60000}; CONCURRENCY=${CONCURRENCY:-16}; SERVER=${SERVER:-$1}
work=$(mktemp -d); server=""
trap '[[ -n $server ]] && kill $server 2>/dev/null; rm -rf "$work"' EXIT
printf '| round | binary | user µs per call | system µs per call | CPU µs per call | calls/s (wall) |\n|---|---|---|---|---|---|\n'
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    : > "$work/serve.log"
    AETHER_API_KEYS=bench-key=bench "$SERVER" serve --bind 127.0.0.1:0 --time-scale 0 --store memory \
      --max-in-flight 4096 --admission-queue 4096 2>"$work/serve.log" & server=$!
    until grep -q "listening on" "$work/serve.log"; do sleep 0.1; done
    url=$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)
    /usr/bin/time -f '%U %S %e' -o "$work/cpu" "$bin" --worker-threads 1 perf run --scenario burst_load \
      --target "$url" --api-key bench-key --concurrency "$CONCURRENCY" --iterations "$REQUESTS" --warmup 0 \
      --output "$work/h.json" >/dev/null 2>&1
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    read -r user sys wall < "$work/cpu"
    python3 - "$work/h.json" "$round" "$bin" "$user" "$sys" "$wall" <<'PY'
import json, sys
path, rnd, binary, user, sys_, wall = sys.argv[1:]
d = json.load(open(path))
if d["requests"]["failed"]:
    sys.exit(f"{binary}: {d['requests']['failed']} failed requests")
calls = 2 * d["requests"]["issued"]
u, s, w = float(user), float(sys_), float(wall)
print(f"| {rnd} | {binary} | {1e6*u/calls:.2f} | {1e6*s/calls:.2f} | {1e6*(u+s)/calls:.2f} | {calls/w:.0f} |")
PY
  done
done
