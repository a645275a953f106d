#!/usr/bin/env bash
# What tracing costs a turn, as interleaved A/B rounds in one run (part 11 §3).
#
# Each round runs the same in-process load once per configuration, in turn, so that the
# machine's drift hits them alike:
#   base      the previous build (BASE=path/to/aether; skipped when unset): tracing not compiled in
#   off       this build, no OTLP endpoint (the default: spans are never made)
#   receiver  this build, 100 % sampling, export to a local OTLP/HTTP receiver
#   down      this build, 100 % sampling, the collector's port closed (every export fails)
# The turn: burst_load with one tool at concurrency 1 and time scale 0, so a request is an agent
# creation (reused) plus a turn of two model calls and one tool call: five spans
# (create_agent, invoke_agent, chat ×2, execute_tool).
#
# Prints a Markdown table: the medians over rounds of the request latency P50 (agent creation
# and turn: five spans), the turn step's alone (four spans: invoke_agent, chat ×2, execute_tool)
# and the framework overhead P50, their differences from `off`, and what the export delivered or
# dropped.
#
#   scripts/otel-overhead.sh                         # this build: off, receiver, down
#   BASE=/tmp/aether-base scripts/otel-overhead.sh   # and the previous build
#   ROUNDS=7 N=40000 scripts/otel-overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${NEW:-target/release/aether}
BASE=${BASE:-}
ROUNDS=${ROUNDS:-5}
N=${N:-20000}
[[ -x $NEW ]] || { echo "build it first: cargo build --release -p aether-cli (or set NEW)" >&2; exit 2; }
out=$(mktemp -d)
trap 'kill $receiver 2>/dev/null || true; rm -rf "$out"' EXIT

python3 scripts/otlp-sink.py "$out/port" &
receiver=$!
for _ in $(seq 50); do [[ -s $out/port ]] && break; sleep 0.1; done
port=$(cat "$out/port")
# A port nothing listens on: bind one, note it, close it.
down=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

configs=(off receiver down)
[[ -n $BASE ]] && configs=(base "${configs[@]}")
run() { # config round
  local bin=$NEW env=()
  case $1 in
    base) bin=$BASE ;;
    receiver) env=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$port) ;;
    down) env=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$down) ;;
  esac
  env "${env[@]}" OTEL_TRACES_SAMPLER=always_on "$bin" perf run --scenario burst_load --tools crm_lookup \
    --concurrency 1 --iterations "$N" --warmup $((N / 10)) --time-scale 0 -q -o "$out/$1-$2.json" 2>>"$out/stderr"
}
for r in $(seq "$ROUNDS"); do
  for c in "${configs[@]}"; do run "$c" "$r"; done
  echo "round $r of $ROUNDS done" >&2
done

python3 - "$out" "${configs[@]}" <<'PY'
import json, glob, statistics, sys
out, configs = sys.argv[1], sys.argv[2:]
rows = {}
for c in configs:
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{c}-*.json"))]
    lat = statistics.median(r["latency_ms"]["p50"] * 1000 for r in runs)
    turn = statistics.median(r["breakdowns"]["latency_by_phase_ms"]["turn"]["p50"] * 1000 for r in runs)
    ovh = statistics.median(r["overhead_us"]["p50"] for r in runs)
    spread = max(r["latency_ms"]["p50"] * 1000 for r in runs) - min(r["latency_ms"]["p50"] * 1000 for r in runs)
    exp = [r.get("span_export") or {} for r in runs]
    rows[c] = (lat, ovh, spread, sum(e.get("exported", 0) for e in exp),
               sum(e.get("dropped_queue_full", 0) + e.get("dropped_export_failed", 0) for e in exp), runs[0], turn)
first = rows[configs[0]][5]
calls = first["runtime_stats"]
print(f"burst_load, 1 tool, concurrency 1, time scale 0; {first['requests']['total']} requests per run, "
      f"{len(glob.glob(out + '/off-*.json'))} rounds; per turn: "
      f"{calls['model_calls'] / calls['turns']:.0f} model calls, {calls['tool_calls'] / calls['turns']:.0f} tool call")
print()
print("| configuration | request P50 µs | spread µs | vs off µs | per span µs | turn alone P50 µs | turn vs off µs | overhead P50 µs | spans exported | dropped |")
print("|---|---|---|---|---|---|---|---|---|---|")
off, off_turn = rows["off"][0], rows["off"][6]
for c in configs:
    lat, ovh, spread, ex, dr, _, turn = rows[c]
    d = lat - off
    print(f"| {c} | {lat:.1f} | {spread:.1f} | {d:+.1f} | {d / 5:+.2f} | {turn:.1f} | {turn - off_turn:+.1f} | {ovh:.2f} | {ex} | {dr} |")
PY
