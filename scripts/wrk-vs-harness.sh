#!/usr/bin/env bash
# The HTTP load generators side by side against `aether serve --time-scale 0 --store memory`:
# wrk (one turn on a new session per request) and `aether perf run --scenario burst_load --target`
# (two calls per request: the agent, then the turn, each checked, its report read and its latency
# recorded in full HDR). Each measurement gets a fresh server (a memory store that already holds
# a previous run's sessions is slower, which would favour whichever ran first), and the two
# generators get the same one thread: wrk -t1, and the harness `--worker-threads 1`
# (HARNESS_THREADS), so both leave the other core to the server. ROUNDS rounds alternate them:
# wrk first in odd rounds, the harness first in even ones. The last line gives the lowest and the
# median ratio over all runs.
# Rates on a shared machine move with its load, so each generator's own CPU time per call is
# printed too (user + system, from /usr/bin/time; wrk's requests are built by its Lua script,
# the harness's encoded and its answers parsed and checked): the cost that decides which of
# the two would be the bottleneck, whatever the machine's noise.
# PIN=1 puts the server on CPU 0 (one async worker) and each generator on CPU 1, so that neither
# takes CPU from the other: the rates then say whether the generator holds the server back (is
# the bottleneck of its own measurement); unpinned (the default), the three share both cores
# and the rates mostly compare the generators' CPU costs. Each row also gives how busy each
# process kept its CPU while the generator ran (CPU time over wall time, in % of one core): with
# PIN=1, a generator well below 100 % while the server is near 100 % is not the bottleneck,
# whatever its rate (the rates then follow the server's core, which the host slows at will).
# Usage: scripts/wrk-vs-harness.sh [CONCURRENCY...]   (default: 16 32; 10 s each; release build)
set -euo pipefail
cd "$(dirname "$0")/.."
AETHER=${AETHER:-target/release/aether}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
HARNESS_THREADS=${HARNESS_THREADS:-1}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is not installed (apt-get install time)" >&2; exit 2; }
[[ -x $AETHER ]] || { echo "$AETHER missing: cargo build --release -p aether-cli" >&2; exit 2; }
on_server=(); on_client=()
if [[ ${PIN:-0} == 1 ]]; then
  (( $(nproc) >= 2 )) || { echo "PIN=1 needs two CPUs" >&2; exit 2; }
  on_server=(taskset -c 0 "$AETHER" --worker-threads 1); on_client=(taskset -c 1)
fi
work=$(mktemp -d); server=""
trap '[[ -n $server ]] && kill $server 2>/dev/null; rm -rf "$work"' EXIT
start_server() {
  : > "$work/serve.log"
  AETHER_API_KEYS=bench-key=bench "${on_server[@]:-$AETHER}" serve --bind 127.0.0.1:0 --time-scale 0 --store memory \
    --max-in-flight 4096 --admission-queue 4096 2>"$work/serve.log" & server=$!
  until grep -q "listening on" "$work/serve.log"; do sleep 0.1; done
  url=$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)
}
stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }
printf '| concurrency | round | wrk turns/s (1 call each) | harness requests/s | harness calls/s (2 per request) | calls: harness / wrk | CPU µs per call: wrk | CPU µs per call: harness | busy %%: wrk / its server | busy %%: harness / its server |\n|---|---|---|---|---|---|---|---|---|---|\n'
cpu() { awk '{print $1 + $2}' "$1"; }  # user + system seconds, from /usr/bin/time -f '%U %S %e'
busy() { awk '{printf "%.0f", 100 * ($1 + $2) / $3}' "$1"; }  # CPU over wall time, % of one core
# The server's CPU time in clock ticks (utime + stime, /proc/PID/stat).
server_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
server_busy() {  # ticks before and after, the run's wall seconds
  python3 -c "import os; print(round(100 * ($2 - $1) / os.sysconf('SC_CLK_TCK') / $3))"
}
run_wrk() {
  start_server
  agent=$(curl -s -H 'authorization: Bearer bench-key' -H 'content-type: application/json' \
    -d '{"agent_type":"bench","model_config":{"model":"gpt-4o-mini"},"system_prompt":"Be brief."}' "$url/v1/agents" | python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_id"])')
  cat > "$work/turn.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local body = '{"task_id":"w' .. counter .. '","agent_id":"$agent","session_id":"w-' .. counter .. '-' .. math.random(1e9) .. '","messages":[{"role":"user","content":"hello"}]}'
  return wrk.format("POST", "/v1/tasks", {["Content-Type"]="application/json", ["Authorization"]="Bearer bench-key"}, body)
end
LUA
  t0=$(server_ticks)
  /usr/bin/time -f '%U %S %e' -o "$work/wrk.cpu" "${on_client[@]}" wrk -t1 -c"$n" -d"${DURATION}s" -s "$work/turn.lua" "$url" > "$work/wrk.txt"
  w_server=$(server_busy "$t0" "$(server_ticks)" "$(awk '{print $3}' "$work/wrk.cpu")")
  stop_server
  if grep -q "Non-2xx" "$work/wrk.txt"; then echo "wrk got errors:" >&2; cat "$work/wrk.txt" >&2; exit 1; fi
  w=$(awk "/Requests\/sec/ {print \$2}" "$work/wrk.txt")
  w_calls=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
}
run_harness() {
  start_server
  t0=$(server_ticks)
  /usr/bin/time -f '%U %S %e' -o "$work/h.cpu" "${on_client[@]}" "$AETHER" --worker-threads "$HARNESS_THREADS" perf run --scenario burst_load --target "$url" \
    --api-key bench-key --concurrency "$n" --duration "${DURATION}s" --output "$work/h.json" >/dev/null 2>&1
  h_server=$(server_busy "$t0" "$(server_ticks)" "$(awk '{print $3}' "$work/h.cpu")")
  stop_server
  h=$(python3 -c "import json;d=json.load(open('$work/h.json'));print(round(d['throughput_rps']))")
  failed=$(python3 -c "import json;d=json.load(open('$work/h.json'));print(d['requests']['failed'])")
  [[ $failed == 0 ]] || { echo "the harness saw $failed failed requests" >&2; exit 1; }
  # Every call the harness sent, warm-up included, against its whole process's CPU time.
  h_calls=$(python3 -c "import json;d=json.load(open('$work/h.json'));print(2*d['requests']['issued'])")
}
ratios=(); h_busy=(); s_busy=()
for n in ${@:-16 32}; do
  for round in $(seq "$ROUNDS"); do
    # wrk first in odd rounds, the harness first in even ones: a host whose load drifts
    # within a round favours neither.
    if (( round % 2 )); then run_wrk; run_harness; else run_harness; run_wrk; fi
    ratio=$(python3 -c "print(f'{2*$h/$w:.2f}')"); ratios+=("$ratio")
    h_busy+=("$(busy "$work/h.cpu")"); s_busy+=("$h_server")
    printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s / %s | %s / %s |\n' "$n" "$round" "$w" "$h" "$((h * 2))" "$ratio" \
      "$(python3 -c "print(f'{$(cpu "$work/wrk.cpu")/$w_calls*1e6:.1f}')")" \
      "$(python3 -c "print(f'{$(cpu "$work/h.cpu")/$h_calls*1e6:.1f}')")" \
      "$(busy "$work/wrk.cpu")" "$w_server" "${h_busy[-1]}" "$h_server"
  done
done
python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print(f'\ncalls: harness / wrk over {len(r)} runs: lowest {min(r):.2f}, median {statistics.median(r):.2f}')" "${ratios[@]}"
python3 -c "import sys; h=[int(x) for x in sys.argv[1].split()]; s=[int(x) for x in sys.argv[2].split()]; print(f'harness busy {min(h)}–{max(h)} % of one core; its server {min(s)}–{max(s)} %')" "${h_busy[*]}" "${s_busy[*]}"
