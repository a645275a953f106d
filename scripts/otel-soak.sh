#!/usr/bin/env bash
# Memory under span export when the collector goes away (part 11 §3): two soaks side by side,
# one with export off and one exporting to a local OTLP receiver that is stopped halfway. The
# export queue is bounded, so after the collector stops spans are dropped and counted, and the
# exporting process's memory must grow no faster than the other's. Both the whole window's
# slopes and its second half's are printed: the window starts after the warm-up, so its second
# half begins after the collector stopped, and it leaves out the one-time step of the bounded
# queue filling then (a level change, which a whole-window fit reads as a slope).
#
#   scripts/otel-soak.sh [MINUTES]        # default 10; prints both summaries' memory figures
#
# Each soak: perf run burst_load, 100 ms model latency, concurrency 50, sessions reclaimed
# after 10 s idle and archives purged after 10 s (bounded retained data), RSS and allocated
# bytes fitted after a 60 s warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/aether}
MIN=${1:-10}
[[ -x $BIN ]] || { echo "build it first: cargo build --release -p aether-cli (or set BIN)" >&2; exit 2; }
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
python3 scripts/otlp-sink.py "$out/port" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
for _ in $(seq 50); do [[ -s $out/port ]] && break; sleep 0.1; done
port=$(cat "$out/port")
soak() { # name, env...
  local name=$1; shift
  env "$@" "$BIN" perf run --scenario burst_load --duration "${MIN}m" --model-latency-ms 100 --concurrency 50 \
    --warmup 60000 --session-idle-ttl 10 --archive-ttl 10 -q -o "$out/$name.json" 2>"$out/$name.stderr"
}
soak off &
a=$!
soak export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$port" OTEL_BSP_MAX_QUEUE_SIZE=2048 &
b=$!
sleep $((MIN * 30))
kill $receiver
echo "collector stopped at $((MIN * 30)) s" >&2
wait $a $b
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| soak | requests | errors | RSS drift MB/h (± error) | RSS, second half | heap drift MB/h (± error) | heap, second half | RSS end MB | spans exported | dropped |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in ("off", "export"):
    s = json.load(open(f"{out}/{name}.json"))
    r = s["resources"]
    e = s.get("span_export") or {}
    mb = lambda v: "n/a" if v is None else f"{v / 1e6:.2f}"
    print(f"| {name} | {s['requests']['total']} | {s['requests']['failed']} | "
          f"{mb(r['rss_drift_bytes_per_hour'])} ± {mb(r.get('rss_drift_error_bytes_per_hour'))} | "
          f"{mb(r.get('rss_drift_late_bytes_per_hour'))} ± {mb(r.get('rss_drift_late_error_bytes_per_hour'))} | "
          f"{mb(r.get('heap_drift_bytes_per_hour'))} ± {mb(r.get('heap_drift_error_bytes_per_hour'))} | "
          f"{mb(r.get('heap_drift_late_bytes_per_hour'))} ± {mb(r.get('heap_drift_late_error_bytes_per_hour'))} | "
          f"{mb(r['rss_end_bytes'])} | {e.get('exported', '-')} | "
          f"{e.get('dropped_queue_full', 0) + e.get('dropped_export_failed', 0) if e else '-'} |")
PY
echo "summaries in $out" >&2
