#!/usr/bin/env bash
# A/B of the turn path's figures between two builds, interleaved, medians compared.
#
#   scripts/ab-turn-path.sh BASE_AETHER NEW_AETHER BASE_BENCH NEW_BENCH [ROUNDS]
#
# BASE_AETHER/NEW_AETHER: release `aether` binaries (cargo build --release -p aether-cli) of the
# two commits; BASE_BENCH/NEW_BENCH: their `live_and_media` bench executables
# (cargo bench -p aether-runtime --bench live_and_media --no-run prints the path). Each round runs,
# for each side (the order alternates between rounds):
#   * framework overhead: perf run burst_load --time-scale 0 --concurrency 1 --iterations 20000
#     --warmup 1000 (summary overhead_us p50/p99, the runtime's own per-turn breakdown);
#   * live cost per chunk: the live_and_media bench (live − sync P50 per chunk);
#   * throughput: burst_load --model-latency-ms 100 --concurrency 1000 --iterations 100000.
# Prints every round, then the medians and new/base ratios. The machine is shared and noisy: read
# ratios, not absolute figures, and run it on an idle machine.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  sed -n '2,16p' "$0" >&2
  exit 2
fi
declare -A bin=([base]="$1" [new]="$2")
declare -A bench=([base]="$3" [new]="$4")
rounds="${5:-5}"
for f in "$1" "$2" "$3" "$4"; do
  [[ -x "$f" ]] || { echo "not an executable: $f" >&2; exit 2; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rows="$work/rows.tsv"

field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }

for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then order=(base new); else order=(new base); fi
  for side in "${order[@]}"; do
    "${bin[$side]}" perf run --scenario burst_load --time-scale 0 --concurrency 1 --iterations 20000 \
      --warmup 1000 --output "$work/o.json" >/dev/null 2>&1
    p50=$(field "$work/o.json" "d['overhead_us']['p50']")
    p99=$(field "$work/o.json" "d['overhead_us']['p99']")
    chunk=$("${bench[$side]}" --bench 2>/dev/null | sed -n 's/^per-chunk framework overhead: \([0-9.]*\) µs.*/\1/p')
    "${bin[$side]}" perf run --scenario burst_load --model-latency-ms 100 --concurrency 1000 \
      --iterations 100000 --output "$work/t.json" >/dev/null 2>&1
    rps=$(field "$work/t.json" "d['throughput_rps']")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$side" "$p50" "$p99" "$chunk" "$rps" | tee -a "$rows"
  done
done

python3 - "$rows" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
cols = [("overhead p50 µs", 2), ("overhead p99 µs", 3), ("live µs per chunk", 4), ("req/s at 1,000 in flight", 5)]
print("\n| figure | base (median) | new (median) | new / base |\n|---|---:|---:|---:|")
for name, i in cols:
    med = {s: statistics.median(float(r[i]) for r in rows if r[1] == s) for s in ("base", "new")}
    print(f"| {name} | {med['base']:.3f} | {med['new']:.3f} | {med['new'] / med['base']:.3f} |")
PY
