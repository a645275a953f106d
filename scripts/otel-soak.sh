#!/usr/bin/env bash
# Memory under span export when the collector goes away (part 11 §3): two soaks side by side,
# one with export off and one exporting to a local OTLP receiver that is stopped halfway. The
# export queue is bounded, so after the collector stops spans are dropped and counted, and the
# exporting process's memory must grow no faster than the other's.
#
# Printed: each summary's own fits (the whole window after the warm-up, and its second half),
# then the comparison that answers the question, fitted over each process's per-second rows from
# 10 s after the collector stopped to the end of the load. (The whole window also holds the
# collector's first half, when the exporting process does more, and the one-time step of the
# bounded queue filling at the stop: a level change, which a fit across it reads as a slope.)
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
stopped=$(date +%s.%N)
echo "collector stopped at $((MIN * 30)) s" >&2
wait $a $b
python3 - "$out" "$stopped" <<'PY'
import json, sys
out, stopped = sys.argv[1], float(sys.argv[2])
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
# The verdict part 11 asks for: each process's RSS (and heap) slope after the collector stopped,
# fitted over the time series' rows (one a second, wall-clock stamped) from 10 s after the stop
# (the bounded queue has filled by then: a level step, not growth) to the end of the load (the
# last row, read after the run's store was flushed, is left out).
def fit(pts):
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    res = sum((y - my - b * (x - mx)) ** 2 for x, y in pts)
    return b * 3600 / 1e6, (res / (n - 2) / sxx) ** 0.5 * 3600 / 1e6
after = {}
for name in ("off", "export"):
    rows = json.load(open(f"{out}/{name}.json"))["timeline"]["rows"][:-1]
    rows = [r for r in rows if r["t"] >= stopped + 10 and r.get("rss_bytes") is not None]
    if len(rows) < 30:
        print(f"{name}: too few rows after the stop to fit ({len(rows)})")
        sys.exit(0)
    after[name] = {k: fit([(r["t"], r[k]) for r in rows if r.get(k) is not None]) for k in ("rss_bytes", "heap_bytes")}
    print(f"after the stop ({len(rows)} s), {name}: RSS {after[name]['rss_bytes'][0]:+.2f} +/- {after[name]['rss_bytes'][1]:.2f} MB/h, "
          f"heap {after[name]['heap_bytes'][0]:+.2f} +/- {after[name]['heap_bytes'][1]:.2f} MB/h")
d = after["export"]["rss_bytes"][0] - after["off"]["rss_bytes"][0]
e = (after["export"]["rss_bytes"][1] ** 2 + after["off"]["rss_bytes"][1] ** 2) ** 0.5
verdict = "no higher" if d <= 0 else ("higher by less than twice the fits' error" if d <= 2 * e else "HIGHER")
print(f"RSS slope after the stop, export - off: {d:+.2f} +/- {e:.2f} MB/h: {verdict}")
PY
echo "summaries in $out" >&2
