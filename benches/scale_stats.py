#!/usr/bin/env python3
"""Helpers for benches/scale.sh (issue 30: how each cost grows with devices, partitions, instances
and event size). Standard library only; --plot needs gnuplot. It reads /metrics with
benches/e2e_stats.py's parser.

  scale_stats.py settle --urls http://A[,http://B...] --partitions P --t0 EPOCH_S [--timeout S]
                        [--no-restore]
      Waits until the group's instances (one /metrics each) own the P partitions between them,
      evenly (each floor(P/k) or ceil(P/k)), and each has restored at least as many partitions
      as it owns (aepiot_state_restore_seconds_count; not with --no-restore). Prints
      {"settled": true, "seconds": since t0, "assigned": [...]}; exit 1 at the timeout (120 s).

  scale_stats.py summary RUNS.jsonl [--machine JSON] [--params JSON]
      The runs (one JSON object per line, with "curve", "x", "run", "ok") -> the results document:
      every run, and per curve and point the median over its ok runs of each measure.

  scale_stats.py plot RESULTS.json --out-dir DIR
      One PNG per curve (DIR/scale-<curve>.png): a panel per measure against the curve's x, the
      medians as a line and every run as a point (gnuplot, pngcairo or png terminal).
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_stats import get, msum, parse_metrics  # noqa: E402

# Per curve: its x (and whether to draw it on a log scale), then each measure: key in a run
# record, label, unit.
CURVES = {
    "devices": ("distinct devices", True, [
        ("steady_events_per_s", "events/s from the first output", ""),
        ("cpu_us_per_event", "processor CPU", "µs/event"),
        ("rss_drained_mb", "RSS after the drain", "MB"),
        ("rss_per_device_b", "RSS growth per device", "B"),
        ("allocated_per_device_b", "allocated per device", "B"),
        ("restore_s", "changelog restore", "s"),
        ("restore_s_per_million", "restore per million devices", "s"),
    ]),
    "partitions": ("input partitions (one instance)", True, [
        ("steady_events_per_s", "events/s from the first output", ""),
        ("rss_idle_mb", "RSS idle", "MB"),
        ("rss_drain_peak_mb", "RSS peak during the drain", "MB"),
        ("prefetch_peak_mb", "prefetched input, peak", "MB"),
        ("t_first_s", "start to first output", "s"),
        ("t_assigned_s", "start to all partitions restored", "s"),
        ("second_takes_half_s", "second instance takes half", "s"),
        ("cpu_us_per_event", "processor CPU", "µs/event"),
    ]),
    "instances": ("instances in the group", False, [
        ("steady_events_per_s", "aggregate events/s from the first output", ""),
        ("cpu_us_per_event", "processor CPU, all instances", "µs/event"),
        ("settle_max_s", "group settle after a join, longest", "s"),
        ("rss_drain_peak_mb", "RSS peak of instance 1", "MB"),
    ]),
    "size": ("event size (bytes)", True, [
        ("steady_events_per_s", "events/s from the first output", ""),
        ("mb_in_per_s", "input MB/s (on disk, lz4)", "MB/s"),
        ("mb_out_per_s", "output MB/s (on disk, lz4)", "MB/s"),
        ("payload_mb_in_per_s", "input MB/s (payload)", "MB/s"),
        ("cpu_us_per_event", "processor CPU", "µs/event"),
    ]),
}


def cmd_settle(a):
    urls = a.urls.split(",")
    k, p = len(urls), a.partitions
    lo, hi = p // k, -(-p // k)
    deadline = time.time() + a.timeout
    assigned = []
    while time.time() < deadline:
        answers = [get(u + "/metrics", timeout=1.0) for u in urls]
        if all(code == 200 for code, _ in answers):
            ms = [parse_metrics(text) for _, text in answers]
            assigned = [int(msum(m, "aepiot_assigned_partitions")) for m in ms]
            restored = [int(msum(m, "aepiot_state_restore_seconds_count")) for m in ms]
            even = sum(assigned) == p and all(lo <= n <= hi for n in assigned)
            done = a.no_restore or all(r >= n for r, n in zip(restored, assigned))
            if even and done:
                print(json.dumps({"settled": True, "seconds": round(time.time() - a.t0, 3),
                                  "assigned": assigned, "restored": restored}))
                return
        time.sleep(0.05)
    print(json.dumps({"settled": False, "assigned": assigned}))
    sys.exit(1)


def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def cmd_summary(a):
    with open(a.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    curves = {}
    for curve, (_, _, measures) in CURVES.items():
        points = {}
        for r in runs:
            if r.get("curve") != curve or not r.get("ok"):
                continue
            points.setdefault(r["x"], []).append(r)
        if not points:
            continue
        curves[curve] = [
            {"x": x, "runs": len(rs), **{key: med([r.get(key) for r in rs]) for key, _, _ in measures}}
            for x, rs in sorted(points.items())
        ]
    doc = {
        "machine": json.loads(a.machine) if a.machine else None,
        "params": json.loads(a.params) if a.params else None,
        "curves": curves,
        "not_ok": [f'{r.get("curve")} x={r.get("x")} run {r.get("run")}' for r in runs if not r.get("ok")],
        "runs": runs,
    }
    json.dump(doc, sys.stdout, indent=1)
    print()


def cmd_plot(a):
    if not shutil.which("gnuplot"):
        sys.exit("scale_stats.py plot: gnuplot is needed (Debian: gnuplot-nox; scripts/install-ci-deps.sh)")
    with open(a.results) as f:
        doc = json.load(f)
    os.makedirs(a.out_dir, exist_ok=True)
    terminals = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    terminal = "pngcairo" if "pngcairo" in (terminals.stdout + terminals.stderr) else "png"
    for curve, points in doc.get("curves", {}).items():
        xlabel, logx, measures = CURVES[curve]
        runs = [r for r in doc.get("runs", []) if r.get("curve") == curve and r.get("ok")]
        measures = [m for m in measures if any(p.get(m[0]) is not None for p in points)]
        if not measures:
            continue
        data = os.path.join(a.out_dir, f"scale-{curve}.dat")
        with open(data, "w") as f:
            # Block 2i: the medians of measure i; block 2i+1: its runs (plotted only when it
            # has points: gnuplot refuses a plot whose every point is undefined).
            with_runs = []
            for key, _, _ in measures:
                for p in points:
                    if p.get(key) is not None:
                        f.write(f"{p['x']} {p[key]}\n")
                f.write("\n\n")
                run_points = [r for r in runs if isinstance(r.get(key), (int, float))]
                for r in run_points:
                    f.write(f"{r['x']} {r[key]}\n")
                with_runs.append(bool(run_points))
                f.write("\n\n")
        cols = 2 if len(measures) > 1 else 1
        rows = math.ceil(len(measures) / cols)
        png = os.path.join(a.out_dir, f"scale-{curve}.png")
        script = [
            f"set terminal {terminal} size {560 * cols},{330 * rows}",
            f"set output '{png}'",
            f"set multiplot layout {rows},{cols} title 'aepiot-stream scale: {curve} (median of runs, runs as points)'",
            "set grid", "set key off", "set yrange [0:*]", f"set xlabel '{xlabel}'",
        ]
        if logx:
            script.append("set logscale x")
        script.append("set xtics (" + ", ".join(f"'{p['x']:g}' {p['x']}" for p in points) + ")")
        for i, (key, label, unit) in enumerate(measures):
            # From 0, unless a value is below it (a growth can be negative in a tiny run): gnuplot
            # refuses a plot whose every point is out of range.
            low = min((p[key] for p in points if p.get(key) is not None), default=0)
            script.append("set yrange [0:*]" if low >= 0 else "set yrange [*:*]")
            script += [
                f"set title '{label}'" + (f"; set ylabel '{unit}'" if unit else "; unset ylabel"),
                f"plot '{data}' index {2 * i} with linespoints lw 2 pt 7"
                + (f", '{data}' index {2 * i + 1} with points pt 6 ps 0.8" if with_runs[i] else ""),
            ]
        script.append("unset multiplot")
        r = subprocess.run(["gnuplot"], input="\n".join(script) + "\n", capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"gnuplot failed for {curve}: {r.stderr}")
        print(png)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("settle")
    p.add_argument("--urls", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--no-restore", action="store_true")
    p.set_defaults(f=cmd_settle)
    p = sub.add_parser("summary")
    p.add_argument("runs")
    p.add_argument("--machine")
    p.add_argument("--params")
    p.set_defaults(f=cmd_summary)
    p = sub.add_parser("plot")
    p.add_argument("results")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(f=cmd_plot)
    a = ap.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
