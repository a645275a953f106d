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
#   PAIRS=4 scripts/otel-soak.sh 10       # four pairs at once, one receiver: the differences'
#                                         # mean and its standard error across the pairs
#
# One pair's RSS slopes over minutes move with sub-megabyte steps (a hash table doubling, the
# allocator keeping or returning pages) that land in one process and not the other, so one pair
# cannot tell a difference of a few MB/h from that noise (the fits' errors, from per-second rows
# whose residuals are correlated, understate it); pairs run at once see the same machine, and
# their spread is the honest error.
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
PAIRS=${PAIRS:-1}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "PAIRS must be a whole number of pairs, at least 1 (got '$PAIRS')" >&2; exit 2; }
pids=()
for k in $(seq "$PAIRS"); do
  soak "off-$k" &
  pids+=($!)
  soak "export-$k" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$port" OTEL_BSP_MAX_QUEUE_SIZE=2048 &
  pids+=($!)
done
sleep $((MIN * 30))
kill $receiver
stopped=$(date +%s.%N)
echo "collector stopped at $((MIN * 30)) s" >&2
wait "${pids[@]}"
python3 - "$out" "$stopped" "$PAIRS" <<'PY'
import json, sys
out, stopped, pairs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
names = [f"{side}-{k}" for k in range(1, pairs + 1) for side in ("off", "export")]
print("| soak | requests | errors | RSS drift MB/h (± error) | RSS, second half | heap drift MB/h (± error) | heap, second half | RSS end MB | spans exported | dropped |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in names:
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
sys.path.insert(0, "scripts")
import linefit
def fit(pts):  # MB/h, and its error
    b, e, _ = linefit.fit(pts)
    return b * 3600 / 1e6, e * 3600 / 1e6
# The whole window after the warm-up, with the stop as a level step: RSS = a + b*t before the
# stop and a + c + b*t after it (the 10 s in which the bounded queue fills are left out). b is
# the slope the plan asks about, fitted over the whole window; c is the one-time step (the queue
# filled to its bound, buffers let go), which a single straight line would read as a slope.
def fit_step(pts, t0):  # MB/h, its error, and the step in MB
    b, e, c = linefit.fit(pts, step_at=t0)
    return b * 3600 / 1e6, e * 3600 / 1e6, c / 1e6
after, whole = {}, {}
for name in names:
    s = json.load(open(f"{out}/{name}.json"))
    rows = [r for r in s["timeline"]["rows"][:-1] if r.get("rss_bytes") is not None]
    late = [r for r in rows if r["t"] >= stopped + 10]
    if len(late) < 30:
        print(f"{name}: too few rows after the stop to fit ({len(late)})")
        sys.exit(0)
    after[name] = {k: fit([(r["t"], r[k]) for r in late if r.get(k) is not None]) for k in ("rss_bytes", "heap_bytes")}
    end = rows[-1]["t"]
    start = end - s["resources"]["drift_window_s"]
    pts = [(r["t"], r["rss_bytes"]) for r in rows if r["t"] >= start and not stopped <= r["t"] < stopped + 10]
    whole[name] = fit_step(pts, stopped)
    print(f"{name}: after the stop ({len(late)} s) RSS {after[name]['rss_bytes'][0]:+.2f} +/- {after[name]['rss_bytes'][1]:.2f} MB/h, "
          f"heap {after[name]['heap_bytes'][0]:+.2f} +/- {after[name]['heap_bytes'][1]:.2f} MB/h; whole window "
          f"({end - start:.0f} s from the warm-up's end) RSS {whole[name][0]:+.2f} +/- {whole[name][1]:.2f} MB/h, "
          f"step at the stop {whole[name][2]:+.2f} MB")
def verdict(d, e):
    return "no higher" if d <= 0 else ("higher by less than twice the error" if d <= 2 * e else "HIGHER")
diffs = {"whole window, the stop's step apart": [], "after the stop": []}
for k in range(1, pairs + 1):
    for label, fits in (("whole window, the stop's step apart", whole), ("after the stop", {n: v["rss_bytes"] for n, v in after.items()})):
        d = fits[f"export-{k}"][0] - fits[f"off-{k}"][0]
        e = (fits[f"export-{k}"][1] ** 2 + fits[f"off-{k}"][1] ** 2) ** 0.5
        diffs[label].append(d)
        print(f"pair {k}: RSS slope {label}, export - off: {d:+.2f} +/- {e:.2f} MB/h (the fits' error): {verdict(d, e)}")
if pairs > 1:
    for label, ds in diffs.items():
        m = sum(ds) / len(ds)
        se = (sum((d - m) ** 2 for d in ds) / (len(ds) - 1) / len(ds)) ** 0.5
        higher = sum(d > 0 for d in ds)
        print(f"{pairs} pairs: RSS slope {label}, export - off: mean {m:+.2f} +/- {se:.2f} MB/h (standard error "
              f"across the pairs), higher in {higher} of {pairs}: {verdict(m, se)}")
PY
echo "summaries in $out" >&2
