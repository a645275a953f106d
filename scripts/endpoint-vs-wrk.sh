#!/usr/bin/env bash
# endpoint_load's client against wrk, side by side on one `aether sim-llm --time-scale 0`, both
# sending the same streamed chat completion (one short prompt, `max_tokens` 128; the simulated
# answer streams as 88 chunks, ~19 KB). wrk reads each whole chunked answer; endpoint_load also
# reads every SSE chunk (as JSON, or against the last text-only chunk's bytes where it repeats
# them around new text), times each piece and reads the usage, recording TTFT/ITL/E2E in full HDR.
# Each generator's own CPU time per answer is printed too (user + system, /usr/bin/time).
# PIN=1 puts the simulator on CPU 0 (one async worker) and each generator on CPU 1 (the harness
# then on one async worker too), so that neither takes CPU from the other: the rates then say
# whether the generator holds the server back; unpinned (the default), they share both cores and
# the rates mostly compare the generators' CPU costs.
# Usage: scripts/endpoint-vs-wrk.sh [CONCURRENCY...]   (default: 16 32; release build)
# Environment: DURATION (seconds per run, default 10), AETHER (the binary), HARNESS_THREADS (the
# harness's async workers; 1 is wrk -t1's footing; default one per core).
set -euo pipefail
cd "$(dirname "$0")/.."
AETHER=${AETHER:-target/release/aether}
DURATION=${DURATION:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is not installed (apt-get install time)" >&2; exit 2; }
[[ -x $AETHER ]] || { echo "$AETHER missing: cargo build --release -p aether-cli" >&2; exit 2; }
on_server=(); on_client=()
if [[ ${PIN:-0} == 1 ]]; then
  (( $(nproc) >= 2 )) || { echo "PIN=1 needs two CPUs" >&2; exit 2; }
  on_server=(taskset -c 0 "$AETHER" --worker-threads 1); on_client=(taskset -c 1); HARNESS_THREADS=1
fi
work=$(mktemp -d); trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
"${on_server[@]:-$AETHER}" sim-llm --port 0 --time-scale 0 2>"$work/sim.log" >"$work/sim.out" & server=$!
until grep -qo 'http://[0-9.:]*' "$work/sim.out" "$work/sim.log" 2>/dev/null; do sleep 0.1; done
url=$(cat "$work/sim.out" "$work/sim.log" | grep -o 'http://[0-9.:]*' | head -1)
prompt="Continue this story: the keeper of the old lighthouse climbed the stairs every evening"
printf '{"prompt": "%s", "output_tokens": 128}\n' "$prompt" > "$work/prompts.jsonl"
cat > "$work/stream.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"max_tokens":128,"messages":[{"role":"user","content":"$prompt"}]}'
LUA
# CPU µs per answer: user + system seconds (from /usr/bin/time -f '%U %S' in $1) over $2 answers.
cpu_us() { python3 -c "u, s = map(float, open('$1').read().split()); print(f'{(u + s) / $2 * 1e6:.1f}')"; }
printf '| concurrency | wrk answers/s | endpoint_load answers/s | endpoint_load / wrk | CPU µs per answer: wrk | CPU µs per answer: endpoint_load | endpoint_load TTFT p50 ms | E2E p50 ms |\n|---|---|---|---|---|---|---|---|\n'
for n in ${@:-16 32}; do
  /usr/bin/time -f '%U %S' -o "$work/wrk.cpu" "${on_client[@]}" wrk -t1 -c"$n" -d"${DURATION}s" -s "$work/stream.lua" "$url/v1/chat/completions" > "$work/wrk.txt"
  if grep -q "Non-2xx" "$work/wrk.txt"; then echo "wrk got errors:" >&2; cat "$work/wrk.txt" >&2; exit 1; fi
  w=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  w_answers=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  /usr/bin/time -f '%U %S' -o "$work/e.cpu" "${on_client[@]}" "$AETHER" ${HARNESS_THREADS:+--worker-threads $HARNESS_THREADS} perf run --scenario endpoint_load --provider openai --base-url "$url/v1" --model gpt-4o-mini \
    --dataset "$work/prompts.jsonl" --concurrency "$n" --duration "${DURATION}s" --output "$work/e.json" >/dev/null 2>&1
  read -r h failed ttft e2e e_answers < <(python3 -c "
import json; d = json.load(open('$work/e.json'))
print(round(d['request_throughput_rps']), d['requests']['failed'], d['ttft_ms']['p50'], d['e2e_ms']['p50'], d['requests']['total'])")
  [[ $failed == 0 ]] || { echo "endpoint_load saw $failed failed requests:" >&2; python3 -c "import json; print(json.load(open('$work/e.json'))['errors'])" >&2; exit 1; }
  printf '| %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$n" "$w" "$h" "$(python3 -c "print(f'{$h/$w:.2f}')")" \
    "$(cpu_us "$work/wrk.cpu" "$w_answers")" "$(cpu_us "$work/e.cpu" "$e_answers")" "$ttft" "$e2e"
done
