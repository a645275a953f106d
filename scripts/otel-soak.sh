#!/usr/bin/env bash
# Memory under span export when the collector goes away (part 11 §3): two soaks side by side,
# one with export off and one exporting to a local OTLP receiver that is stopped halfway. The
# export queue is bounded, so after the collector stops spans are dropped and counted, and the
# exporting process's memory must grow no faster than the other's.
#
# Printed: each summary's own fits (the whole window after the warm-up, and its second half),
# then two comparisons of the processes' RSS slopes, from their per-second rows:
#   - over the whole window after the warm-up, with the collector's stop as a level step: one
#     slope for the window and a step at the stop, fitted together (the bounded queue fills
#     there, once: a level change, which a single straight line across it reads as a slope);
#     the step's size is printed beside the slope;
#   - after the stop alone, from 10 s after it to the end of the load.
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
# The whole window after the warm-up, with the stop as a level step: RSS = a + b*t before the
# stop and a + c + b*t after it (the 10 s in which the bounded queue fills are left out). b is
# the slope the plan asks about, fitted over the whole window; c is the one-time step (the queue
# filled to its bound, buffers let go), which a single straight line would read as a slope.
def fit_step(pts, t0):
    groups = [[p for p in pts if p[0] < t0], [p for p in pts if p[0] >= t0]]
    means = [(sum(x for x, _ in g) / len(g), sum(y for _, y in g) / len(g)) for g in groups]
    sxx = sum((x - m[0]) ** 2 for g, m in zip(groups, means) for x, _ in g)
    b = sum((x - m[0]) * (y - m[1]) for g, m in zip(groups, means) for x, y in g) / sxx
    res = sum((y - m[1] - b * (x - m[0])) ** 2 for g, m in zip(groups, means) for x, y in g)
    step = means[1][1] - means[0][1] - b * (means[1][0] - means[0][0])
    return b * 3600 / 1e6, (res / (len(pts) - 3) / sxx) ** 0.5 * 3600 / 1e6, step / 1e6
whole = {}
for name in ("off", "export"):
    s = json.load(open(f"{out}/{name}.json"))
    rows = [r for r in s["timeline"]["rows"][:-1] if r.get("rss_bytes") is not None]
    end = rows[-1]["t"]
    start = end - s["resources"]["drift_window_s"]
    pts = [(r["t"], r["rss_bytes"]) for r in rows if r["t"] >= start and not stopped <= r["t"] < stopped + 10]
    whole[name] = fit_step(pts, stopped)
    b, e, c = whole[name]
    print(f"whole window ({end - start:.0f} s from the warm-up's end), {name}: RSS {b:+.2f} +/- {e:.2f} MB/h, step at the stop {c:+.2f} MB")
d = whole["export"][0] - whole["off"][0]
e = (whole["export"][1] ** 2 + whole["off"][1] ** 2) ** 0.5
verdict = "no higher" if d <= 0 else ("higher by less than twice the fits' error" if d <= 2 * e else "HIGHER")
print(f"RSS slope over the whole window, the stop's step apart, export - off: {d:+.2f} +/- {e:.2f} MB/h: {verdict}")
d = after["export"]["rss_bytes"][0] - after["off"]["rss_bytes"][0]
e = (after["export"]["rss_bytes"][1] ** 2 + after["off"]["rss_bytes"][1] ** 2) ** 0.5
verdict = "no higher" if d <= 0 else ("higher by less than twice the fits' error" if d <= 2 * e else "HIGHER")
print(f"RSS slope after the stop, export - off: {d:+.2f} +/- {e:.2f} MB/h: {verdict}")
PY
echo "summaries in $out" >&2
