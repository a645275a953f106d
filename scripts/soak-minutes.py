#!/usr/bin/env python3
"""A soak's memory by the minute, from a summary's time series (`aether perf run ... -o F`).

Usage: scripts/soak-minutes.py SUMMARY.json [SKIP_S]

For each minute of the run (after SKIP_S seconds, default 60: the warm-up) it prints the rows'
trough and peak of: the heap (the allocators' allocated bytes, the harness's own series and
histograms included: the summary's `*_net` fits subtract those); glibc malloc's share (in the
`aether` binary, the C libraries' other than SQLite's); SQLite's share and its page caches'
(`sqlite_bytes`, `sqlite_cache_bytes`: the caches fill to their bound, `cache_size` a
connection); the heap less those caches; RSS; and RSS's file-backed share (`rss_file_bytes`:
SQLite's WAL index, the binary's pages). Troughs show level steps that a fitted slope blurs;
then it fits each trough series (MB/h, with the fit's error) over the whole window and its
second half. Where the rows carry the runtime's live sessions (`sessions_live`, in-process runs)
it prints their mean and peak each minute, and how each trough series correlates with the
minutes' mean live sessions and with the clock. Where the rows also carry the harness's own
bytes (`harness_bytes`), `heap_net` is the heap less those and the page caches, and it is
fitted, row by row, on time and live sessions together: the growth that more live sessions do
not explain, and what each live session holds (least squares' error here, which takes the rows
as independent; summaries since the harness fits this itself carry it with a Newey-West
error, `resources.heap_drift_at_live_set_bytes_per_hour`, and it is printed too). The rows'
last one (a partial interval) is left out.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linefit import fit  # noqa: E402

COLUMNS = [
    ("heap", "heap_bytes"),
    ("malloc", "malloc_bytes"),
    ("sqlite", "sqlite_bytes"),
    ("sqlite_cache", "sqlite_cache_bytes"),
    ("heap_less_cache", "heap_less_cache"),
    ("heap_net", "heap_net"),
    ("rss", "rss_bytes"),
    ("rss_file", "rss_file_bytes"),
]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    summary = json.load(open(sys.argv[1]))
    skip = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    rows = summary.get("timeline", {}).get("rows", [])[:-1]
    if not rows:
        sys.exit(f"{sys.argv[1]}: no timeline rows")
    for r in rows:
        if "heap_bytes" in r and "sqlite_cache_bytes" in r:
            r["heap_less_cache"] = r["heap_bytes"] - r["sqlite_cache_bytes"]
        if "heap_bytes" in r and "harness_bytes" in r:
            r["heap_net"] = r["heap_bytes"] - r["harness_bytes"] - r.get("sqlite_cache_bytes", 0)
    t0 = rows[0]["t"]
    minutes = {}
    for r in rows:
        if r["t"] - t0 < skip:
            continue
        minutes.setdefault(int((r["t"] - t0) // 60), []).append(r)
    present = [(name, key) for name, key in COLUMNS if any(key in r for r in rows)]
    live = any("sessions_live" in r for r in rows)
    print("| minute | requests/s | " + ("sessions live mean, peak | " if live else "")
          + " | ".join(f"{n} trough–peak MB" for n, _ in present) + " |")
    print("|---" * (2 + live + len(present)) + "|")
    troughs = {n: [] for n, _ in present}
    live_means = []
    for m in sorted(minutes):
        rs = minutes[m]
        rate = sum(r["requests"] for r in rs) / max(1, len(rs)) / summary.get("timeline", {}).get("interval_s", 1.0)
        cells = []
        for name, key in present:
            vals = [r[key] / 1e6 for r in rs if key in r]
            if vals:
                troughs[name].append((m + 0.5, min(vals)))
                cells.append(f"{min(vals):.1f}–{max(vals):.1f}")
            else:
                cells.append("")
        if live:
            counts = [r["sessions_live"] for r in rs if "sessions_live" in r]
            mean = sum(counts) / max(1, len(counts))
            live_means.append(mean)
            cells.insert(0, f"{mean:,.0f}, {max(counts, default=0):,}")
        print(f"| {m} | {rate:.0f} | " + " | ".join(cells) + " |")
    print()
    for name, pts in troughs.items():
        if len(pts) < 4:
            continue
        half = pts[len(pts) // 2:]
        (b, e, _), (bh, eh, _) = fit(pts), fit(half)
        line = f"{name} troughs: {b * 60:+.2f} ± {e * 60:.2f} MB/h over the window, {bh * 60:+.2f} ± {eh * 60:.2f} over its second half"
        if live and len(live_means) == len(pts):
            ys = [v for _, v in pts]
            line += f"; r against live sessions {corr(live_means, ys):+.2f}, against the clock {corr([t for t, _ in pts], ys):+.2f}"
        print(line)
    both = time_and_live(rows, t0, skip)
    if both:
        print(f"heap_net (every row, less the harness's data and the page caches) on time and live sessions together: "
              f"{both[0]:+.2f} ± {both[1]:.2f} MB/h, {both[2]:.0f} ± {both[3]:.0f} B per live session "
              f"(after {skip:.0f} s; least squares' error)")
    res = summary.get("resources", {})
    if "heap_drift_at_live_set_bytes_per_hour" in res:
        print(f"the summary's own fit (the drift window, Newey-West error): "
              f"{res['heap_drift_at_live_set_bytes_per_hour'] / 1e6:+.2f} ± {res['heap_drift_at_live_set_error_bytes_per_hour'] / 1e6:.2f} MB/h, "
              f"{res['heap_bytes_per_live_session']:.0f} ± {res['heap_bytes_per_live_session_error']:.0f} B per live session")


def time_and_live(rows, t0, skip):
    """Least squares of the net heap (bytes) on time and live sessions together, over every row
    after SKIP_S: (MB/h, its error, bytes per live session, its error), or None."""
    pts = [(r["t"] - t0, r["sessions_live"], r["heap_net"]) for r in rows
           if r["t"] - t0 >= skip and "heap_net" in r and "sessions_live" in r]
    n = len(pts)
    if n < 10:
        return None
    means = [sum(p[i] for p in pts) / n for i in range(3)]
    t, l, y = ([p[i] - means[i] for p in pts] for i in range(3))
    stt, sll, stl = sum(a * a for a in t), sum(b * b for b in l), sum(a * b for a, b in zip(t, l))
    sty, sly = sum(a * c for a, c in zip(t, y)), sum(b * c for b, c in zip(l, y))
    det = stt * sll - stl * stl
    if det <= 0:
        return None
    bt, bl = (sty * sll - sly * stl) / det, (sly * stt - sty * stl) / det
    s2 = sum((c - bt * a - bl * b) ** 2 for a, b, c in zip(t, l, y)) / (n - 3)
    return bt * 3600 / 1e6, (s2 * sll / det) ** 0.5 * 3600 / 1e6, bl, (s2 * stt / det) ** 0.5


def corr(xs, ys):
    """Pearson's r of two equal-length series (0 where either is constant)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else 0.0


if __name__ == "__main__":
    main()
