#!/usr/bin/env python3
"""Statistics for benches/rebalance.sh (rebalance protocols on a real broker).

Two modes, standard library only:

  rebalance_stats.py run --outputs OUT.jsonl --dlq DLQ.jsonl --describe DESCRIBE.txt \
      --input-topic T --events EVENTS.json [--log NAME=PATH ...] [--meta JSON] \
      [--dups-out DUPS.tsv]
      One run: prints one JSON object (one line) on stdout.

  rebalance_stats.py summary RUNS.jsonl [--machine JSON] [--params JSON] [--markdown]
      All runs: prints the results document (JSON) on stdout, and with --markdown a
      table per setting on stderr.

Definitions (one run):
  expected    sum of the input topic's end offsets (fresh topic, non-transactional producer:
              every offset is one record), read from the final ConsumerGroupCommand --describe.
  total       output records + dead letters read back from the output and dead-letter topics.
  distinct    distinct source (partition, offset) pairs among them.
  duplicates  total - distinct (records produced more than once).
  lost        expected - |distinct pairs inside [0, end offset)|; must be 0.
  pause       per input partition, the outputs' `processed_at` times (ms) sorted; gaps between
              consecutive outputs inside the run window [t0, drained]; pause = longest gap - the
              median gap of that partition (its steady-state spacing). max_pause_ms is the
              largest over partitions, median_partition_pause_ms the median of the per-partition
              pauses.
  stop-the-world  per rebalance event (B joins, C joins, B leaves), the longest interval with no
              output at all (every partition merged) that starts inside the event's window
              [event, next event) (the last window ends when the producer stops), minus the
              merged median gap.
"""

import argparse
import datetime as dt
import json
import statistics
import sys
from collections import defaultdict

_EPOCH_CACHE = {}


def ts_ms(text):
    """RFC 3339 UTC timestamp ('2026-11-26T12:33:29.542Z', any fraction) -> float epoch ms."""
    head = text[:19]
    base = _EPOCH_CACHE.get(head)
    if base is None:
        base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.timezone.utc).timestamp()
        _EPOCH_CACHE[head] = base
    frac = text[19:].rstrip("Z")
    if frac.startswith("."):
        digits = frac[1:]
        f = int(digits) / (10 ** len(digits)) if digits else 0.0
    else:
        f = 0.0
    return (base + f) * 1000.0


def read_jsonl(path):
    with open(path, "r", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield json.loads(line)


def parse_describe(path, topic):
    """ConsumerGroupCommand --describe text -> {partition: (current, log_end)}."""
    rows = {}
    with open(path, "r", encoding="utf-8") as fh:
        for line in fh:
            f = line.split()
            if len(f) >= 6 and f[1] == topic and f[2].isdigit():
                cur = int(f[3]) if f[3].lstrip("-").isdigit() else None
                end = int(f[4])
                rows[int(f[2])] = (cur, end)
    return rows


def parse_log(path):
    """An instance's JSON log -> rebalance callbacks, worker starts/stops, warnings."""
    out = {"callbacks": [], "workers": [], "warnings": [], "stopped_cleanly": False}
    try:
        fh = open(path, "r", encoding="utf-8", errors="replace")
    except OSError:
        return out
    with fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                if line.strip():
                    out["warnings"].append(("RAW", line.strip()[:300], None))
                continue
            fields = rec.get("fields", {})
            msg = fields.get("message", "")
            t = ts_ms(rec["timestamp"]) if "timestamp" in rec else None
            if msg in ("partitions assigned", "partitions revoked"):
                out["callbacks"].append((t, msg.split()[1], fields.get("partitions")))
            elif msg in ("partition worker started", "partition worker stopped"):
                out["workers"].append((t, msg.split()[2], fields.get("partition")))
            elif msg == "state restored":
                out["workers"].append((t, "restored", fields.get("partition")))
            elif msg == "stopped cleanly":
                out["stopped_cleanly"] = True
            if rec.get("level") in ("WARN", "ERROR"):
                out["warnings"].append((rec.get("level"), msg[:300], t))
    return out


def median(xs):
    return statistics.median(xs) if xs else None


def gaps_in(times, lo, hi):
    """Consecutive gaps (start, length) of sorted `times`, for pairs inside [lo, hi]."""
    res = []
    prev = None
    for t in times:
        if t < lo or t > hi:
            continue
        if prev is not None:
            res.append((prev, t - prev))
        prev = t
    return res


def cmd_run(a):
    meta = json.loads(a.meta) if a.meta else {}
    ev = json.load(open(a.events, encoding="utf-8"))
    t0 = ev["t0_ms"]
    producer_end = ev["producer_end_ms"]
    drained = ev.get("drained_ms") or producer_end
    events = ev["events"]  # [{"name":..., "t_ms":...}], in time order

    ends = parse_describe(a.describe, a.input_topic)
    expected = sum(e for _, e in ends.values())
    committed_ok = bool(ends) and all(c == e for c, e in ends.values())

    seen = defaultdict(list)  # (p, o) -> [processed_at ms or None]
    per_part = defaultdict(list)
    all_times = []
    status = defaultdict(int)
    n_out = n_dlq = 0
    bad_lines = 0
    for rec in read_jsonl(a.outputs):
        src = rec.get("source") or {}
        if src.get("topic") != a.input_topic:
            bad_lines += 1
            continue
        p, o = src["partition"], src["offset"]
        t = ts_ms(rec["processed_at"])
        seen[(p, o)].append(t)
        per_part[p].append(t)
        all_times.append(t)
        status[rec.get("status", "?")] += 1
        n_out += 1
    for rec in read_jsonl(a.dlq):
        src = rec.get("source") or {}
        if src.get("topic") != a.input_topic:
            bad_lines += 1
            continue
        seen[(src["partition"], src["offset"])].append(None)
        n_dlq += 1

    total = n_out + n_dlq
    distinct = len(seen)
    in_range = sum(1 for (p, o) in seen if p in ends and 0 <= o < ends[p][1])
    out_of_range = distinct - in_range
    lost = expected - in_range

    # Duplicates, with evidence: when each extra copy was produced, relative to t0.
    dup_pairs = [(k, v) for k, v in seen.items() if len(v) > 1]
    dup_by_part = defaultdict(int)
    dup_rel_times = []
    for (p, o), v in dup_pairs:
        dup_by_part[p] += len(v) - 1
        ts = sorted(x for x in v if x is not None)
        dup_rel_times.extend(x - t0 for x in ts[1:])
    if a.dups_out:
        with open(a.dups_out, "w", encoding="utf-8") as fh:
            fh.write("partition\toffset\tcopies\tprocessed_at_rel_t0_ms\n")
            for (p, o), v in sorted(dup_pairs):
                rel = ",".join("%.0f" % (x - t0) if x is not None else "dlq" for x in v)
                fh.write(f"{p}\t{o}\t{len(v)}\t{rel}\n")

    # Per-partition pauses over the run window.
    part_stats = {}
    for p, ts in per_part.items():
        ts.sort()
        g = gaps_in(ts, t0, drained)
        if not g:
            continue
        typical = median([x for _, x in g])
        start, longest = max(g, key=lambda x: x[1])
        part_stats[p] = {
            "typical_gap_ms": round(typical, 2),
            "max_gap_ms": round(longest, 1),
            "pause_ms": round(longest - typical, 1),
            "pause_at_rel_ms": round(start - t0),
        }
    pauses = [s["pause_ms"] for s in part_stats.values()]

    # Stop-the-world per event, from every partition's outputs merged.
    all_times.sort()
    merged = gaps_in(all_times, t0, drained)
    merged_typical = median([x for _, x in merged]) or 0.0
    logs = {}
    for spec in a.log or []:
        name, _, path = spec.partition("=")
        logs[name] = parse_log(path)
    # Hand-overs from the instances' logs: a partition's worker stopped on one instance (no
    # worker left anywhere) until a worker started on another (unowned), and until that worker
    # restored the partition's state from the changelog (unavailable).
    timeline = defaultdict(list)
    for name, lg in logs.items():
        for t, kind, p in lg["workers"]:
            timeline[p].append((t, kind, name))
    handovers = []  # (stopped_at, unowned_ms, unavailable_ms or None, partition)
    for p, tl in timeline.items():
        tl.sort()
        owners = set()
        freed = None
        pending = None
        for t, kind, name in tl:
            if kind == "started":
                if freed is not None and not owners:
                    pending = [freed, t - freed, None, p, name]
                    handovers.append(pending)
                freed = None
                owners.add(name)
            elif kind == "stopped":
                owners.discard(name)
                if not owners:
                    freed = t
            elif kind == "restored" and pending is not None and pending[4] == name:
                pending[2] = t - pending[0]
                pending = None

    # Baseline: from t0 + 2 s (A warmed up) to the first event, no rebalance at all.
    base_lo, base_hi = t0 + 2000, events[0]["t_ms"] if events else producer_end
    base_merged = [x for s0, x in merged if base_lo <= s0 < base_hi]
    base_part = 0.0
    for p, ts in per_part.items():
        typ = part_stats.get(p, {}).get("typical_gap_ms", 0.0)
        g = [x for s0, x in gaps_in(ts, t0, drained) if base_lo <= s0 < base_hi]
        if g:
            base_part = max(base_part, max(g) - typ)
    baseline = {
        "window_rel_ms": [round(base_lo - t0), round(base_hi - t0)],
        "stop_the_world_ms": round(max(base_merged) - merged_typical, 1) if base_merged else None,
        "max_partition_pause_ms": round(base_part, 1),
    }

    ev_out = []
    for i, e in enumerate(events):
        lo = e["t_ms"]
        hi = events[i + 1]["t_ms"] if i + 1 < len(events) else producer_end
        in_win = [(s, x) for s, x in merged if lo <= s < hi]
        stw_start, stw = max(in_win, key=lambda x: x[1]) if in_win else (None, 0.0)
        # Largest per-partition pause whose gap starts in the window.
        worst = 0.0
        paused_parts = 0
        for p, ts in per_part.items():
            typ = part_stats.get(p, {}).get("typical_gap_ms", 0.0)
            g = [x for s, x in gaps_in(ts, t0, drained) if lo <= s < hi]
            if g:
                m = max(g) - typ
                worst = max(worst, m)
                paused_parts += m >= 250.0
        cbs = []
        started = 0
        for name, lg in logs.items():
            for t, kind, n in lg["callbacks"]:
                if lo <= t < hi:
                    cbs.append({"instance": name, "rel_ms": round(t - lo), "kind": kind,
                                "partitions": n})
            started += sum(1 for t, k, _ in lg["workers"] if k == "started" and lo <= t < hi)
        cbs.sort(key=lambda c: c["rel_ms"])
        hos = [h for h in handovers if lo <= h[0] < hi]
        unavail = [h[2] for h in hos if h[2] is not None]
        ev_out.append({
            "event": e["name"],
            "t_rel_ms": round(lo - t0),
            "stop_the_world_ms": round(max(stw - merged_typical, 0.0), 1),
            "stop_the_world_at_rel_event_ms": None if stw_start is None else round(stw_start - lo),
            "max_partition_pause_ms": round(worst, 1),
            "partitions_paused_250ms": paused_parts,
            "partition_workers_started": started,
            "settled_after_ms": max((c["rel_ms"] for c in cbs), default=None),
            "handovers": len(hos),
            "max_unowned_ms": round(max(h[1] for h in hos)) if hos else None,
            "max_unavailable_ms": round(max(unavail)) if unavail else None,
            "callbacks": cbs,
        })

    warnings = {}
    for name, lg in logs.items():
        counts = defaultdict(int)
        for level, msg, _ in lg["warnings"]:
            counts[f"{level}: {msg}"] += 1
        warnings[name] = dict(counts)

    anomalies = []
    for k, rc in (meta.get("exit_codes") or {}).items():
        if rc != 0:
            anomalies.append(f"{k} exited with {rc}")
    if meta.get("drained") is False:
        anomalies.append("lag did not reach 0")
    if not committed_ok:
        anomalies.append("committed offsets differ from end offsets")
    if total - distinct:
        anomalies.append(f"{total - distinct} duplicates")
    if lost:
        anomalies.append(f"{lost} lost")
    for name, lg in logs.items():
        for level, msg, _ in lg["warnings"]:
            if level == "ERROR" or (level == "RAW" and "error" in msg.lower()):
                anomalies.append(f"{name}: {msg}")

    result = dict(meta)
    result.update({
        "expected": expected,
        "committed_equals_end": committed_ok,
        "outputs": n_out,
        "dead_letters": n_dlq,
        "total": total,
        "distinct": distinct,
        "duplicates": total - distinct,
        "lost": lost,
        "out_of_range": out_of_range,
        "foreign_records": bad_lines,
        "status_counts": dict(status),
        "duplicates_by_partition": {str(k): v for k, v in sorted(dup_by_part.items())},
        "duplicate_copies_rel_t0_ms": (
            [round(min(dup_rel_times)), round(max(dup_rel_times))] if dup_rel_times else None),
        "max_pause_ms": max(pauses) if pauses else None,
        "median_partition_pause_ms": round(median(pauses), 1) if pauses else None,
        "stop_the_world_ms": max((e["stop_the_world_ms"] for e in ev_out), default=None),
        "merged_typical_gap_ms": round(merged_typical, 3),
        "drain_after_producer_ms": round(drained - producer_end),
        "baseline": baseline,
        "events": ev_out,
        "partitions": {str(k): v for k, v in sorted(part_stats.items())},
        "instances_stopped_cleanly": {k: v["stopped_cleanly"] for k, v in logs.items()},
        "log_warnings": warnings,
        "anomalies": anomalies,
    })
    print(json.dumps(result, separators=(",", ":")))


def _mmm(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def cmd_summary(a):
    runs = list(read_jsonl(a.runs))
    by = defaultdict(list)
    order = []
    for r in runs:
        if r["setting"] not in by:
            order.append(r["setting"])
        by[r["setting"]].append(r)
    summary = []
    for s in order:
        rs = by[s]
        ok = [r for r in rs if "expected" in r]
        per_event = defaultdict(list)
        for r in ok:
            for e in r["events"]:
                per_event[e["event"]].append(e)
        summary.append({
            "setting": s,
            "group_protocol": rs[0].get("group_protocol"),
            "partition_assignment_strategy": rs[0].get("partition_assignment_strategy"),
            "runs": len(rs),
            "runs_measured": len(ok),
            "failures": [r.get("error") for r in rs if "expected" not in r],
            "anomalies": {str(r["run"]): r["anomalies"] for r in ok if r.get("anomalies")},
            "duplicates": _mmm([r["duplicates"] for r in ok]),
            "lost_total": sum(r["lost"] for r in ok),
            "max_pause_ms": _mmm([r["max_pause_ms"] for r in ok]),
            "median_partition_pause_ms": _mmm([r["median_partition_pause_ms"] for r in ok]),
            "stop_the_world_ms": _mmm([r["stop_the_world_ms"] for r in ok]),
            "baseline_stop_the_world_ms": _mmm([r["baseline"]["stop_the_world_ms"] for r in ok]),
            "baseline_max_partition_pause_ms": _mmm([r["baseline"]["max_partition_pause_ms"] for r in ok]),
            "drain_after_producer_ms": _mmm([r["drain_after_producer_ms"] for r in ok]),
            "loadavg_1m": _mmm([r.get("loadavg_1m") for r in ok]),
            "by_event": {
                ev: {
                    "stop_the_world_ms": _mmm([e["stop_the_world_ms"] for e in es]),
                    "max_partition_pause_ms": _mmm([e["max_partition_pause_ms"] for e in es]),
                    "partition_workers_started": _mmm([e["partition_workers_started"] for e in es]),
                    "settled_after_ms": _mmm([e["settled_after_ms"] for e in es]),
                    "handovers": _mmm([e.get("handovers") for e in es]),
                    "max_unowned_ms": _mmm([e.get("max_unowned_ms") for e in es]),
                    "max_unavailable_ms": _mmm([e.get("max_unavailable_ms") for e in es]),
                }
                for ev, es in per_event.items()
            },
        })
    doc = {
        "benchmark": "benches/rebalance.sh",
        "machine": json.loads(a.machine) if a.machine else None,
        "params": json.loads(a.params) if a.params else None,
        "summary": summary,
        "runs": runs,
    }
    print(json.dumps(doc, indent=1))
    if a.markdown:
        f = lambda m: "—" if m is None else "%g / %g / %g" % (m["median"], m["min"], m["max"])
        w = sys.stderr
        w.write("| setting | runs | duplicates med / min / max | lost | max pause ms med / min / max"
                " | median per-partition pause ms | stop-the-world ms |\n|---|---|---|---|---|---|---|\n")
        for s in summary:
            w.write(f"| {s['setting']} | {s['runs_measured']}/{s['runs']} | {f(s['duplicates'])} | "
                    f"{s['lost_total']} | {f(s['max_pause_ms'])} | {f(s['median_partition_pause_ms'])} | "
                    f"{f(s['stop_the_world_ms'])} |\n")
        w.write("\nbaseline (no rebalance, t0+2s .. B joins), median over runs: stop-the-world ms / "
                "max partition pause ms\n")
        for s in summary:
            g = lambda k: "—" if s[k] is None else "%g" % s[k]["median"]
            w.write(f"  {s['setting']:<30} {g('baseline_stop_the_world_ms'):>8} "
                    f"{g('baseline_max_partition_pause_ms'):>8}\n")
        w.write("\nper event (median over runs): stop-the-world ms / max partition pause ms / "
                "workers started / hand-overs / max unowned ms / max unavailable ms (until restored) / "
                "callbacks settled after ms\n")
        for s in summary:
            for ev, d in s["by_event"].items():
                g = lambda k: "—" if d.get(k) is None else "%g" % d[k]["median"]
                w.write(f"  {s['setting']:<30} {ev:<10} {g('stop_the_world_ms'):>8} "
                        f"{g('max_partition_pause_ms'):>8} {g('partition_workers_started'):>4} "
                        f"{g('handovers'):>4} {g('max_unowned_ms'):>7} {g('max_unavailable_ms'):>7} "
                        f"{g('settled_after_ms'):>7}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--outputs", required=True)
    r.add_argument("--dlq", required=True)
    r.add_argument("--describe", required=True)
    r.add_argument("--input-topic", required=True)
    r.add_argument("--events", required=True)
    r.add_argument("--log", action="append")
    r.add_argument("--meta")
    r.add_argument("--dups-out")
    s = sub.add_parser("summary")
    s.add_argument("runs")
    s.add_argument("--machine")
    s.add_argument("--params")
    s.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    (cmd_run if a.cmd == "run" else cmd_summary)(a)


if __name__ == "__main__":
    main()
