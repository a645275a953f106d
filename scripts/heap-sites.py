#!/usr/bin/env python3
"""Which code grows the live heap: fit every site's sampled bytes over a run's heap dumps.

jemalloc's profiler (`--features heap-profile`, then
`_RJEM_MALLOC_CONF=prof:true,lg_prof_sample:17,lg_prof_interval:31,prof_prefix:DIR/h`) writes a
sampled profile of the live heap every 2 GiB allocated, as DIR/h.PID.SEQ.iN.heap. This script
reads each dump of one process with jeprof (`--text --cum`: every function with the bytes live
under it, itself or its callees), stamps it with the file's modification time, and fits each
function's bytes against time over a window, by least squares. It prints the functions whose
bytes grew or shrank the most, with each slope's standard error, and the total.

    scripts/heap-sites.py BINARY DIR [--pid PID] [--from MIN] [--to MIN] [--top N] [--match RE]

    BINARY  the profiled binary (symbols), e.g. /tmp/tprof/release/aether
    DIR     the dumps' folder; with several processes' dumps there, --pid picks one (default:
            the process with the most dumps)
    --from, --to   the window, in minutes from the first dump (default: all)
    --top N        how many sites to print (default 25), by |slope|
    --match RE     only functions whose name matches RE (e.g. 'opentelemetry|tonic|hyper')

JEPROF (default /tmp/jeprof) is jemalloc's bin/jeprof.in with @jemalloc_version@ and
@JEMALLOC_PREFIX@ replaced by 5.3.1 and _rjem_ (README, "Heap profiles").

The sampling (one sample per 128 KiB allocated at lg_prof_sample:17) makes a site's bytes noisy:
read a slope against its error, and a site under a few hundred KB as a guess.
"""
import argparse
import collections
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linefit import fit  # noqa: E402


def dumps(folder, pid):
    pat = re.compile(r"\.(\d+)\.(\d+)\.i(\d+)\.heap$")
    by_pid = collections.defaultdict(list)
    for name in os.listdir(folder):
        m = pat.search(name)
        if m:
            by_pid[m.group(1)].append((int(m.group(2)), os.path.join(folder, name)))
    if not by_pid:
        sys.exit(f"no heap dumps (*.PID.SEQ.iN.heap) in {folder}")
    if pid is None:
        pid = max(by_pid, key=lambda p: len(by_pid[p]))
    elif pid not in by_pid:
        sys.exit(f"no dumps of process {pid} in {folder}; processes there: {', '.join(sorted(by_pid))}")
    return pid, [path for _, path in sorted(by_pid[pid])]


def sites(jeprof, binary, path):
    """Bytes live under each function (cumulative), and the total, from one dump."""
    text = subprocess.run(
        [jeprof, "--text", "--cum", "--nodefraction=0", "--edgefraction=0", "--nodecount=1000000", binary, path],
        capture_output=True, text=True, check=True,
    ).stdout
    total, out = None, {}
    unit = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    for line in text.splitlines():
        m = re.match(r"Total: ([\d.]+) (\w+)", line)
        if m:
            total = float(m.group(1)) * unit.get(m.group(2), 1e6)
            continue
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[1].endswith("%") and parts[4].endswith("%"):
            try:
                out[parts[5]] = float(parts[3]) * 1e6  # jeprof --text prints MB
            except ValueError:
                pass
    return total, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("binary")
    p.add_argument("dir")
    p.add_argument("--pid")
    p.add_argument("--from", dest="start", type=float, default=0.0)
    p.add_argument("--to", dest="end", type=float, default=float("inf"))
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--match")
    a = p.parse_args()
    jeprof = os.environ.get("JEPROF", "/tmp/jeprof")
    if not os.access(jeprof, os.X_OK):
        sys.exit(f"jeprof not found at {jeprof} (set JEPROF; README, 'Heap profiles', says how to make it)")
    pid, paths = dumps(a.dir, a.pid)
    t0 = os.path.getmtime(paths[0])
    rows = []
    for path in paths:
        minute = (os.path.getmtime(path) - t0) / 60
        if a.start <= minute <= a.end:
            rows.append((minute, *sites(jeprof, a.binary, path)))
    if len(rows) < 3:
        sys.exit(f"{len(rows)} dumps of process {pid} in the window: too few to fit")
    per_hour = 60 / 1e6  # bytes per minute -> MB per hour
    tb, te, _ = fit([(m, t) for m, t, _ in rows])
    print(f"process {pid}: {len(rows)} dumps, minutes {rows[0][0]:.1f}-{rows[-1][0]:.1f}; sampled live heap "
          f"{rows[0][1] / 1e6:.1f} -> {rows[-1][1] / 1e6:.1f} MB, {tb * per_hour:+.2f} +/- {te * per_hour:.2f} MB/h")
    names = set().union(*(s for _, _, s in rows))
    if a.match:
        names = {n for n in names if re.search(a.match, n)}
    fits = []
    for name in names:
        pts = [(m, s.get(name, 0.0)) for m, _, s in rows]
        b, e, _ = fit(pts)
        fits.append((abs(b), b, e, pts[0][1], pts[-1][1], name))
    fits.sort(reverse=True)
    print(f"{'MB/h':>8} {'+/-':>6} {'first MB':>9} {'last MB':>8}  function (bytes live under it)")
    for _, b, e, first, last, name in fits[: a.top]:
        print(f"{b * per_hour:+8.2f} {e * per_hour:6.2f} {first / 1e6:9.2f} {last / 1e6:8.2f}  {name}")


if __name__ == "__main__":
    main()
