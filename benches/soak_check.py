#!/usr/bin/env python3
"""benches/soak_check.py — the verdict of benches/soak.sh (see its header).

Lost successes: `process` judged the input partition by partition (sizes in WORK/sizes, in that
order), so line L of its output maps to (partition, offset); every (partition, offset) it judged
`success` must have a `success` record on the output topic (whose `source` names its input).
"""
import argparse
import json
import os
import re

ap = argparse.ArgumentParser()
for a in ("work", "rss5", "rss-end", "final-lag", "recoveries", "duration", "rate", "devices",
          "kill-every", "static", "restart-after"):
    ap.add_argument("--" + a, default="")
args = ap.parse_args()

sizes = [tuple(map(int, line.split())) for line in open(f"{args.work}/sizes")]
starts, total = [], 0
for p, n in sizes:
    starts.append((total, p))
    total += n


def coordinates(line):  # 1-based line of the concatenated input -> (partition, offset)
    i = line - 1
    for start, p in reversed(starts):
        if i >= start:
            return p, i - start
    raise ValueError(line)


LINE = re.compile(rb'"source":\{"line":(\d+)\}')
expected = set()
judged = 0
with open(f"{args.work}/judged.jsonl", "rb") as f:
    for raw in f:
        judged += 1
        if b'"status":"success"' in raw:
            expected.add(coordinates(int(LINE.search(raw).group(1))))

SOURCE = re.compile(rb'"source":\{"topic":"[^"]*","partition":(\d+),"offset":(\d+)\}')
written, outputs = set(), 0
with open(f"{args.work}/output.jsonl", "rb") as f:
    for raw in f:
        outputs += 1
        if b'"status":"success"' in raw:
            m = SOURCE.search(raw)
            written.add((int(m.group(1)), int(m.group(2))))

rss5, rss_end = int(args.rss5 or 0), int(args.rss_end or 0)
recoveries = [int(x) for x in args.recoveries.split()] if args.recoveries else []
result = {
    "duration_s": int(args.duration), "rate": int(args.rate), "devices": int(args.devices),
    "kill_every_s": int(args.kill_every), "static_membership": args.static == "1",
    "restart_after_s": int(args.restart_after or 0),
    "input_records": total, "judged_by_process": judged,
    "expected_successes": len(expected), "output_records": outputs,
    "distinct_successes_written": len(written),
    "lost_successes": len(expected - written),
    "successes_process_did_not_expect": len(written - expected),
    "repeated_outputs": outputs - len(written),
    "final_group_lag": int(args.final_lag or -1),
    "rss_minute5_bytes": rss5, "rss_end_bytes": rss_end,
    "rss_change": round(rss_end / rss5 - 1, 4) if rss5 else None,
    "recovery_s_after_each_restart": recoveries,
    # [seconds since the load started, B's RSS bytes, devices B holds], every minute.
    # [elapsed s, RSS, devices, allocator's allocated bytes, allocator's resident bytes]
    "rss_series_b": [list(map(int, map(float, l.split()))) for l in open(f"{args.work}/rss_series")
                     if len(l.split()) >= 3] if os.path.exists(f"{args.work}/rss_series") else [],
}
# What B took over: each partition it restored after its start, [time, partition, devices], and
# its revocations, [time, partitions] (the size of each takeover decides how much B's memory moves).
b_restores, b_revokes = [], []
if os.path.exists(f"{args.work}/b.log"):
    for text in open(f"{args.work}/b.log", errors="replace"):
        try:
            line = json.loads(text)
        except ValueError:
            continue
        f = line.get("fields", {})
        if f.get("message") == "state restored" and f.get("devices", 0) > 0:
            b_restores.append([line.get("timestamp"), f.get("partition"), f.get("devices")])
        elif f.get("message") == "partitions revoked" and f.get("partitions", 0) > 0:
            b_revokes.append([line.get("timestamp"), f.get("partitions")])
result["b_restored"] = b_restores
result["b_revoked"] = b_revokes
result["ok"] = (result["lost_successes"] == 0 and result["final_group_lag"] == 0
                and result["rss_change"] is not None and abs(result["rss_change"]) <= 0.10
                and all(0 <= r <= 30 for r in recoveries))
print(json.dumps(result, indent=2))
