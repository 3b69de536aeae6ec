#!/usr/bin/env python3
"""Helpers for benches/e2e.sh (end-to-end benchmarks on a real broker). Standard library only.

  e2e_stats.py wait-ready --url http://ADDR --partitions P [--timeout S]
      Waits until /readyz is 200 and aepiot_assigned_partitions (run) reaches P, or (passthrough,
      which has no such gauge) /readyz is 200. Prints seconds waited.

  e2e_stats.py wait-drain --url http://ADDR --expect N --t0 EPOCH_S [--timeout S] [--stable S]
                          [--pid PID] [--broker-pid PID] [--interval S]
      Polls /metrics every --interval (0.05 s) until every input record is processed and every
      output acknowledged, and prints one JSON object (--url and --pid may list the instances of
      one group, comma-separated: their metrics and CPU are summed):
        t_ready      first poll with aepiot_assigned_partitions > 0 (run only) or /readyz 200
        t_first      first poll with sum(aepiot_events_total) > 0 (seconds after t0)
        t_processed  first poll with sum(aepiot_events_total) == N
        t_done       first poll at which aepiot_processing_latency_seconds_count had its final
                     value (the last acknowledgement arrived between the previous poll and this)
        seconds      t_done (from process start, t0 = just before exec)
        events_per_s N / seconds;  steady_events_per_s N / (t_done - t_first)
      "Final" = unchanged for --stable seconds (2) after sum(aepiot_events_total) == N. Why not
      "latency count == success + invalid": with the state changelog on, a batch's changelog
      records are acknowledged together with the batch's last record, which may be a suppressed
      one, so such records are observed too and the count exceeds success + invalid by a few.
      The caller then verifies, with the consumer group's committed offsets, that everything
      was acknowledged (offsets are stored only after all outputs of a record and every earlier
      record of its partition are acknowledged).
      With --pid, also per-thread CPU seconds of the process (grouped by thread name) taken just
      before the drain completes (at the last poll), with --broker-pid the broker's CPU seconds, and
      the whole machine's busy share (from /proc/stat) over [t0, t_done].

  e2e_stats.py metrics --url http://ADDR
      A JSON summary of /metrics (events by outcome, latency count, state devices, RSS).

  e2e_stats.py rss --pid PID
      VmRSS and VmHWM (bytes) of a process, JSON.

  e2e_stats.py sample --pid PID --url http://ADDR --out FILE [--every S]
      Until the process exits, every S (1) seconds one JSON line: t, VmRSS, state devices and
      cache entries, events processed, latency count, prefetched input bytes (the memory
      benchmark's time series).

  e2e_stats.py describe --file DESCRIBE.txt --expect N
      Parses ConsumerGroupCommand --describe output: sum of CURRENT-OFFSET, LOG-END-OFFSET, LAG;
      JSON with ok = (current == end == N and lag == 0).

  e2e_stats.py latency --inputs INPUTS.txt [--outputs -] [--warmup S]
      INPUTS.txt: kcat -f '%p %o %T %s\\n' of the input topic (LogAppendTime). Outputs (stdin by
      default): kcat -f '%T %s\\n' of the output topic (LogAppendTime), one URL record per line;
      the record's `source` (partition, offset) is matched to its input. Three latencies (ms), from
      the same records: the processor's own part ("all", "after_warmup") = output append - input
      append; "input_path" = input append - the event's `timestamp` (simulate stamps it just
      before producing: the load generator and the broker without any processor); "end_to_end" =
      output append - the event's `timestamp`. Each: count, p50/p90/p99/p99.9/max, mean, over
      everything and without the first --warmup seconds (5) of input.

  e2e_stats.py perf-summary PERF_REPORT.txt
      A flat `perf report --no-children --sort comm,dso,sym --stdio` -> CPU shares by thread, by
      category (engine, worker glue, librdkafka, lz4, malloc/free, memcpy, locks, clock, kernel)
      and by thread and category (JSON).

  e2e_stats.py summary RUNS.jsonl [--machine JSON] [--params JSON] [--markdown]
      All runs (one JSON object per line, with "bench" and "variant") -> the results document on
      stdout (per-run values and medians per bench/variant, the passthrough ratio per run and of
      the medians), a markdown table on stderr with --markdown.
"""

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import time
import urllib.error
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (urllib.error.URLError, ConnectionError, OSError):
        return None, ""


LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text):
    """-> dict name -> list of (labels str, float)"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        out.setdefault(m.group(1), []).append((m.group(2) or "", v))
    return out


def msum(m, name):
    return sum(v for _, v in m.get(name, []))


def summary_of(m):
    events = {}
    for labels, v in m.get("aepiot_events_total", []):
        o = re.search(r'outcome="([^"]*)"', labels)
        events[o.group(1) if o else labels] = int(v)
    return {
        "events": events,
        "events_total": int(msum(m, "aepiot_events_total")),
        "latency_count": int(msum(m, "aepiot_processing_latency_seconds_count")),
        "event_age_count": int(msum(m, "aepiot_event_age_seconds_count")),
        "state_devices": int(msum(m, "aepiot_state_devices")),
        "state_cache_entries": int(msum(m, "aepiot_state_cache_entries")),
        "assigned_partitions": int(msum(m, "aepiot_assigned_partitions")),
        "urls_generated": int(msum(m, "aepiot_urls_generated_total")),
        "delivery_failures": int(msum(m, "aepiot_delivery_failures_total")),
        "process_resident_memory_bytes": int(msum(m, "process_resident_memory_bytes")),
        # Exactly-once: transactions committed and the seconds the commits held the workers.
        "transaction_commits": int(msum(m, "aepiot_transaction_commit_seconds_count")),
        "transaction_commit_seconds": round(msum(m, "aepiot_transaction_commit_seconds_sum"), 3),
        # Memory and restores (benches/scale.sh).
        "consumer_prefetch_bytes": int(msum(m, "aepiot_consumer_prefetch_bytes")),
        "allocator_allocated_bytes": int(msum(m, "aepiot_allocator_allocated_bytes")),
        "state_restores": int(msum(m, "aepiot_state_restore_seconds_count")),
        "state_restore_seconds": round(msum(m, "aepiot_state_restore_seconds_sum"), 3),
    }


def thread_cpu(pid):
    """Per-thread CPU seconds grouped by thread name (digits folded: rdk:broker1 -> rdk:broker#)."""
    groups = {}
    total = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1 : s.rindex(")")]
        rest = s[s.rindex(")") + 2 :].split()
        secs = (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime, stime
        key = re.sub(r"\d+", "#", name)
        g = groups.setdefault(key, {"threads": 0, "cpu_s": 0.0})
        g["threads"] += 1
        g["cpu_s"] = round(g["cpu_s"] + secs, 2)
        total += secs
    return {"total_cpu_s": round(total, 2), "by_thread": dict(sorted(groups.items(), key=lambda kv: -kv[1]["cpu_s"]))}


def threads_cpu(pids):
    """thread_cpu of each process, summed (the instances of one group)."""
    each = [thread_cpu(p) for p in pids]
    if any(c is None for c in each):
        return None
    if len(each) == 1:
        return each[0]
    groups = {}
    for c in each:
        for k, g in c["by_thread"].items():
            t = groups.setdefault(k, {"threads": 0, "cpu_s": 0.0})
            t["threads"] += g["threads"]
            t["cpu_s"] = round(t["cpu_s"] + g["cpu_s"], 2)
    return {"total_cpu_s": round(sum(c["total_cpu_s"] for c in each), 2),
            "by_thread": dict(sorted(groups.items(), key=lambda kv: -kv[1]["cpu_s"]))}


def brokers_cpu(pids):
    """CPU seconds of the broker processes (comma-separated pids: a cluster's nodes)."""
    vals = [proc_cpu(int(p)) for p in str(pids).split(",") if p]
    return None if not vals or any(v is None for v in vals) else sum(vals)


def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def machine_busy():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + v[4]
    return sum(v[:8]), idle  # total jiffies (without guest), idle+iowait


def cmd_wait_ready(a):
    start = time.time()
    while time.time() - start < a.timeout:
        code, _ = get(a.url + "/readyz")
        if code == 200:
            if a.partitions <= 0:
                break
            _, text = get(a.url + "/metrics")
            m = parse_metrics(text)
            if "aepiot_assigned_partitions" not in m or msum(m, "aepiot_assigned_partitions") >= a.partitions:
                break
        time.sleep(0.05)
    else:
        print(json.dumps({"ready": False, "seconds": round(time.time() - start, 3)}))
        sys.exit(1)
    print(json.dumps({"ready": True, "seconds": round(time.time() - start, 3)}))


def cmd_wait_drain(a):
    t0 = a.t0
    busy0 = machine_busy()
    broker0 = brokers_cpu(a.broker_pid) if a.broker_pid else None
    t_ready = t_first = t_processed = None
    last_count = None
    t_count_changed = None  # first poll at which the latency count had its current value
    last = None
    cpu = None
    busy_at_change = busy0
    broker_at_change = broker0
    deadline = time.time() + a.timeout
    # Several instances of one group (comma-separated): their metrics are summed, their CPU too.
    urls = a.url.split(",")
    pids = [int(p) for p in str(a.pid).split(",") if p] if a.pid else []
    while True:
        now = time.time()
        if now > deadline:
            print(json.dumps({"ok": False, "error": "timeout", "last": last}))
            sys.exit(1)
        if any(not os.path.exists(f"/proc/{p}") for p in pids):
            print(json.dumps({"ok": False, "error": "process exited", "last": last}))
            sys.exit(1)
        answers = [get(u + "/metrics", timeout=1.0) for u in urls]
        code = 200 if all(c == 200 for c, _ in answers) else None
        text = "\n".join(t for _, t in answers)
        if code == 200:
            m = parse_metrics(text)
            s = summary_of(m)
            last = s
            if t_ready is None and ("aepiot_assigned_partitions" not in m or s["assigned_partitions"] > 0):
                t_ready = now - t0
            if t_first is None and s["events_total"] > 0:
                t_first = now - t0
            if t_processed is None and s["events_total"] >= a.expect:
                t_processed = now - t0
            if s["latency_count"] != last_count:
                last_count = s["latency_count"]
                t_count_changed = now - t0
                # Snapshots at the moment of the last change = the end of the drain.
                if pids:
                    cpu = threads_cpu(pids)
                busy_at_change = machine_busy()
                broker_at_change = brokers_cpu(a.broker_pid) if a.broker_pid else None
            if t_processed is not None and s["latency_count"] > 0 and now - t0 - t_count_changed >= a.stable:
                break
        time.sleep(a.interval)
    t_done = t_count_changed
    dt_total = busy_at_change[0] - busy0[0]
    busy_share = (1 - (busy_at_change[1] - busy0[1]) / dt_total) if dt_total > 0 else None
    busy_cpu_s = (dt_total - (busy_at_change[1] - busy0[1])) / CLK_TCK
    broker_cpu_s = (broker_at_change - broker0) if broker0 is not None and broker_at_change is not None else None
    out = {
        "ok": True,
        "expect": a.expect,
        "t_ready": round(t_ready, 3) if t_ready is not None else None,
        "t_first": round(t_first, 3),
        "t_processed": round(t_processed, 3),
        "t_done": round(t_done, 3),
        "seconds": round(t_done, 3),
        "events_per_s": round(a.expect / t_done),
        "steady_events_per_s": round(a.expect / (t_done - t_first)) if t_done - t_first >= 0.1 else None,
        "metrics": last,
        "machine_busy_share": round(busy_share, 3) if busy_share is not None else None,
        "machine_busy_cpu_s": round(busy_cpu_s, 2),
        "process_cpu": cpu,
    }
    if cpu is not None:
        out["process_cpu_us_per_event"] = round(cpu["total_cpu_s"] / a.expect * 1e6, 2)
    if broker_cpu_s is not None:
        out["broker_cpu_s"] = round(broker_cpu_s, 2)
        out["broker_cpu_us_per_event"] = round(broker_cpu_s / a.expect * 1e6, 2)
    if cpu is not None and broker_cpu_s is not None:
        # Everything else on the machine (other users, this script's polling, kcat, simulate).
        out["other_cpu_s"] = round(busy_cpu_s - cpu["total_cpu_s"] - broker_cpu_s, 2)
    print(json.dumps(out))


def cmd_metrics(a):
    code, text = get(a.url + "/metrics")
    if code != 200:
        print(json.dumps({"ok": False}))
        sys.exit(1)
    print(json.dumps(summary_of(parse_metrics(text))))


def cmd_rss(a):
    out = {}
    with open(f"/proc/{a.pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    print(json.dumps(out))


def cmd_sample(a):
    """Every --every s until the process exits: t, VmRSS, devices, cache entries, events (JSON lines)."""
    t0 = time.time()
    with open(a.out, "w") as out:
        while os.path.exists(f"/proc/{a.pid}"):
            try:
                rss = 0
                with open(f"/proc/{a.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1]) * 1024
                code, text = get(a.url + "/metrics", timeout=1.0)
                s = summary_of(parse_metrics(text)) if code == 200 else {}
                out.write(json.dumps({"t": round(time.time() - t0, 2), "rss": rss,
                                      "devices": s.get("state_devices"),
                                      "cache": s.get("state_cache_entries"),
                                      "events": s.get("events_total"),
                                      "latency_count": s.get("latency_count"),
                                      "prefetch": s.get("consumer_prefetch_bytes")}) + "\n")
                out.flush()
            except OSError:
                break
            time.sleep(a.every)


def cmd_describe(a):
    cur = end = lag = 0
    parts = 0
    with open(a.file) as f:
        header = None
        for line in f:
            cols = line.split()
            if not cols:
                continue
            if "CURRENT-OFFSET" in cols:
                header = cols
                continue
            if header is None or len(cols) < len(header):
                continue
            row = dict(zip(header, cols))
            try:
                end += int(row["LOG-END-OFFSET"])
                cur += int(row["CURRENT-OFFSET"]) if row["CURRENT-OFFSET"] != "-" else 0
                lag += int(row["LAG"]) if row["LAG"] != "-" else int(row["LOG-END-OFFSET"])
                parts += 1
            except (KeyError, ValueError):
                continue
    ok = cur == end == a.expect and lag == 0
    print(json.dumps({"ok": ok, "partitions": parts, "committed": cur, "end": end, "lag": lag}))


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


SOURCE = re.compile(rb'"source":\{"topic":"(?:[^"\\]|\\.)*","partition":(\d+),"offset":(\d+)\}')


EVENT_TS = re.compile(rb'"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,3}))?Z"')


def event_ms(payload, cache={}):
    """The event's own `timestamp` (RFC 3339, UTC, ms) in epoch ms, or None. simulate stamps it
    just before it hands the event to its producer: the start of the input path."""
    m = EVENT_TS.search(payload)
    if not m:
        return None
    sec = m.group(1)
    base = cache.get(sec)
    if base is None:
        base = int(datetime.datetime.strptime(sec.decode(), "%Y-%m-%dT%H:%M:%S")
                   .replace(tzinfo=datetime.timezone.utc).timestamp()) * 1000
        cache[sec] = base
    frac = m.group(2) or b"0"
    return base + int(frac.ljust(3, b"0"))


def cmd_latency(a):
    # (partition, offset) -> (input append time, event time or None)
    ts = {}
    first_ts = None
    input_path, input_path_w = [], []
    with open(a.inputs, "rb") as f:
        for line in f:
            p = line.rstrip(b"\n").split(b" ", 3)
            if len(p) < 3:
                continue
            t = int(p[2])
            ev = event_ms(p[3]) if len(p) == 4 else None
            ts[(int(p[0]), int(p[1]))] = (t, ev)
            first_ts = t if first_ts is None else min(first_ts, t)
    warm_end = (first_ts or 0) + int(a.warmup * 1000)
    for t, ev in ts.values():
        if ev is not None:
            input_path.append(t - ev)
            if t >= warm_end:
                input_path_w.append(t - ev)
    src = sys.stdin.buffer if a.outputs == "-" else open(a.outputs, "rb")
    lat, lat_w, e2e, e2e_w, unmatched, n = [], [], [], [], 0, 0
    # The start-up tail, second by second (by input append time) over the first 10 s: the
    # processor's part beside the input path of the same second.
    by_second = {k: ([], []) for k in range(10)}
    for t, ev in ts.values():
        k = (t - (first_ts or 0)) // 1000
        if ev is not None and k in by_second:
            by_second[k][1].append(t - ev)
    for line in src:
        sp = line.find(b" ")
        if sp <= 0:
            continue
        n += 1
        m = SOURCE.search(line, sp)
        if not m:
            unmatched += 1
            continue
        got = ts.get((int(m.group(1)), int(m.group(2))))
        if got is None:
            unmatched += 1
            continue
        t_in, ev = got
        t_out = int(line[:sp])
        d = t_out - t_in
        lat.append(d)
        k = (t_in - (first_ts or 0)) // 1000
        if k in by_second:
            by_second[k][0].append(d)
        if t_in >= warm_end:
            lat_w.append(d)
        if ev is not None:
            e2e.append(t_out - ev)
            if t_in >= warm_end:
                e2e_w.append(t_out - ev)

    def stats(v):
        v.sort()
        if not v:
            return {"count": 0}
        return {
            "count": len(v),
            "p50_ms": pct(v, 50),
            "p90_ms": pct(v, 90),
            "p99_ms": pct(v, 99),
            "p99_9_ms": pct(v, 99.9),
            "max_ms": v[-1],
            "mean_ms": round(sum(v) / len(v), 2),
        }

    # all/after_warmup: the processor's own part. input_path: the load generator to the broker
    # (every input). end_to_end: the two together, per output.
    print(json.dumps({"inputs": len(ts), "outputs": n, "unmatched": unmatched,
                      "all": stats(lat), "after_warmup": stats(lat_w), "warmup_s": a.warmup,
                      "input_path": {"all": stats(input_path), "after_warmup": stats(input_path_w)},
                      "end_to_end": {"all": stats(e2e), "after_warmup": stats(e2e_w)},
                      "first_seconds": [
                          {"second": k, "outputs": len(proc),
                           "processor_p99_ms": pct(sorted(proc), 99) if proc else None,
                           "processor_max_ms": max(proc) if proc else None,
                           "input_path_p99_ms": pct(sorted(inp), 99) if inp else None}
                          for k, (proc, inp) in sorted(by_second.items())]}))


PERF_LINE = re.compile(r"^\s+([\d.]+)%\s+(\S(?:.*?\S)?)\s{2,}(\S+)\s+\[(.)\]\s+(.*?)\s*$")
CATEGORIES = [
    ("lz4 (compress outputs, decompress inputs)", re.compile(r"^LZ4|^XXH")),
    ("malloc/free", re.compile(r"malloc|_int_free|^free$|cfree|calloc|realloc|unlink_chunk|consolidate|tcache|arena")),
    ("memcpy/memset", re.compile(r"^__mem|^memcpy|^memmove|^memset")),
    ("locks, atomics, futex", re.compile(r"pthread_|rwlock|futex|__lll_|cnd_|mtx_")),
    ("clock", re.compile(r"clock_gettime|gettimeofday|rd_clock")),
    ("librdkafka", re.compile(r"^rd_|^rdk|^crc32|^rd_kafka")),
    ("engine (aepiot_stream::core, JSON, URLs, hashing)", re.compile(r"aepiot_stream::core|indexmap|hashbrown|serde_json|xxh|compact_str|foldhash|percent_encoding|^core::str|^core::fmt|time::|smallvec|ryu|itoa")),
    ("worker glue (aepiot_stream::kafka, rdkafka crate, tokio, metrics)", re.compile(r"aepiot_stream::|rdkafka::|tokio::|prometheus|dashmap|std::|alloc::|core::")),
]


def cmd_perf_summary(a):
    """perf report --no-children --sort comm,dso,sym --stdio (flat) -> shares by thread and category."""
    by_thread, by_cat, by_thread_cat = {}, {}, {}
    total = 0.0
    with open(a.report) as f:
        for line in f:
            m = PERF_LINE.match(line)
            if not m:
                continue
            pct_, comm, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)
            thread = re.sub(r"\d+", "#", comm)
            if kind == "k":
                cat = "kernel"
            else:
                cat = next((c for c, rx in CATEGORIES if rx.search(sym)), "other")
            total += pct_
            by_thread[thread] = by_thread.get(thread, 0) + pct_
            by_cat[cat] = by_cat.get(cat, 0) + pct_
            tc = by_thread_cat.setdefault(thread, {})
            tc[cat] = tc.get(cat, 0) + pct_
    r2 = lambda d: {k: round(v, 1) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}
    print(json.dumps({"total_pct": round(total, 1), "by_thread": r2(by_thread), "by_category": r2(by_cat),
                      "by_thread_category": {t: r2(c) for t, c in sorted(by_thread_cat.items(), key=lambda kv: -by_thread[kv[0]])}}, indent=1))


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def cmd_summary(a):
    runs = []
    with open(a.runs) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    doc = {
        "machine": json.loads(a.machine) if a.machine else None,
        "params": json.loads(a.params) if a.params else None,
        "runs": runs,
        "summary": {},
    }
    # Drain: per variant medians; ratio per run against the same run's passthrough of the same
    # guarantee.
    drain = [r for r in runs if r.get("bench") == "drain" and r.get("ok")]
    variants = sorted({r["variant"] for r in drain}, key=lambda v: ["run", "passthrough", "run-eos", "passthrough-eos", "run-no-changelog"].index(v) if v in ["run", "passthrough", "run-eos", "passthrough-eos", "run-no-changelog"] else 99)
    ds = {}
    for v in variants:
        rs = [r for r in drain if r["variant"] == v]
        ds[v] = {
            "runs": len(rs),
            "events_per_s": [r["events_per_s"] for r in rs],
            "median_events_per_s": med([r["events_per_s"] for r in rs]),
            "median_seconds": med([r["seconds"] for r in rs]),
            "median_steady_events_per_s": med([r["steady_events_per_s"] for r in rs]),
            "median_t_first_s": med([r["t_first"] for r in rs]),
            "median_process_cpu_us_per_event": med([r.get("process_cpu_us_per_event") for r in rs]),
            "median_broker_cpu_us_per_event": med([r.get("broker_cpu_us_per_event") for r in rs]),
            "median_other_cpu_s": med([r.get("other_cpu_s") for r in rs]),
            "load_1m": [r.get("load_before") for r in rs],
        }
    ratios = {}
    by_run = {}
    for r in drain:
        by_run.setdefault(r["run"], {})[r["variant"]] = r["events_per_s"]
    for num, den in (("run", "passthrough"), ("run-eos", "passthrough-eos"), ("run-no-changelog", "passthrough"), ("run-eos", "run"), ("run", "run-b"),
                     ("run-avro", "run"), ("run-protobuf", "run"), ("run-jsonschema", "run")):
        per_run = [round(v[num] / v[den], 3) for v in by_run.values() if num in v and den in v]
        if per_run:
            key = f"{num}/{den}"
            ratios[key] = {
                "per_run": per_run,
                "median_of_ratios": round(statistics.median(per_run), 3),
                "ratio_of_medians": round(ds[num]["median_events_per_s"] / ds[den]["median_events_per_s"], 3),
            }
    if ds:
        doc["summary"]["drain"] = {"variants": ds, "ratios": ratios}
    lat = [r for r in runs if r.get("bench") == "latency" and r.get("ok")]
    if lat:
        ls = {}
        for v in sorted({r["variant"] for r in lat}):
            rs = [r for r in lat if r["variant"] == v]
            ls[v] = {
                "runs": len(rs),
                **{f"median_{k}": med([r["latency"]["after_warmup"].get(k) for r in rs]) for k in ("p50_ms", "p99_ms", "p99_9_ms", "max_ms")},
                "median_all_p99_ms": med([r["latency"]["all"].get("p99_ms") for r in rs]),
                # Per run, beside each other: what the processor adds, what the input path alone
                # takes, and the two together (after the warm-up; "all" includes it).
                "p99_ms_per_run": {
                    part: [(r["latency"] if part == "processor" else r["latency"].get(part, {})).get("after_warmup", {}).get("p99_ms") for r in rs]
                    for part in ("processor", "input_path", "end_to_end")},
                "p99_ms_per_run_with_warmup": {
                    part: [(r["latency"] if part == "processor" else r["latency"].get(part, {})).get("all", {}).get("p99_ms") for r in rs]
                    for part in ("processor", "input_path", "end_to_end")},
            }
        doc["summary"]["latency"] = ls
    mem = [r for r in runs if r.get("bench") == "memory" and r.get("ok")]
    if mem:
        ms = {}
        for v in sorted({(r["variant"], r.get("rate", 0)) for r in mem}):
            rs = [r for r in mem if (r["variant"], r.get("rate", 0)) == v]
            ms[f"{v[0]} rate={v[1]}"] = {
                "runs": len(rs),
                "rss_growth_mb": [round(r["rss_growth_bytes"] / 1e6, 1) for r in rs],
                "median_rss_growth_mb": med([r["rss_growth_bytes"] / 1e6 for r in rs]),
                "median_rss_after_mb": med([r["rss_after"]["VmRSS"] / 1e6 for r in rs]),
                "median_peak_rss_mb": med([r["rss_after"]["VmHWM"] / 1e6 for r in rs]),
                "median_state_devices": med([r["state_devices"] for r in rs]),
                "median_bytes_per_device": med([r["rss_growth_bytes"] / max(r["state_devices"], 1) for r in rs]),
                "median_drain_seconds": med([r.get("drain", {}).get("seconds") for r in rs]),
            }
        doc["summary"]["memory"] = ms
    json.dump(doc, sys.stdout, indent=1)
    print()
    if a.markdown:
        md = []
        if ds:
            md.append("| variant | runs | events/s per run | median events/s | median s | median steady events/s | process CPU µs/event | broker CPU µs/event | load before |")
            md.append("|---|---|---|---|---|---|---|---|---|")
            for v, d in ds.items():
                md.append(f"| {v} | {d['runs']} | {', '.join(str(x) for x in d['events_per_s'])} | {d['median_events_per_s']:.0f} | {d['median_seconds']:.2f} | {d['median_steady_events_per_s']} | {d['median_process_cpu_us_per_event']} | {d['median_broker_cpu_us_per_event']} | {d['load_1m']} |")
            for k, r in ratios.items():
                md.append(f"\nratio {k}: per run {r['per_run']}, median {r['median_of_ratios']}, of medians {r['ratio_of_medians']}")
        if lat:
            md.append("\n| latency variant | runs | processor p50 ms | processor p99 ms | p99.9 ms | max ms | p99 per run: processor / input path / end to end | same with the first 5 s |")
            md.append("|---|---|---|---|---|---|---|---|")
            for v, d in doc["summary"]["latency"].items():
                per, per_all = d["p99_ms_per_run"], d["p99_ms_per_run_with_warmup"]
                md.append(f"| {v} | {d['runs']} | {d['median_p50_ms']} | {d['median_p99_ms']} | {d['median_p99_9_ms']} | {d['median_max_ms']} | {per['processor']} / {per['input_path']} / {per['end_to_end']} | {per_all['processor']} / {per_all['input_path']} / {per_all['end_to_end']} |")
        if mem:
            for v, m in doc["summary"]["memory"].items():
                md.append(f"\nmemory {v}: runs {m['runs']}, RSS growth {m['rss_growth_mb']} MB (median {m['median_rss_growth_mb']:.1f}), peak {m['median_peak_rss_mb']:.1f} MB, devices {m['median_state_devices']}, {m['median_bytes_per_device']:.0f} B/device")
        print("\n".join(md), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("wait-ready")
    p.add_argument("--url", required=True)
    p.add_argument("--partitions", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120)
    p.set_defaults(f=cmd_wait_ready)
    p = sub.add_parser("wait-drain")
    p.add_argument("--url", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--stable", type=float, default=2.0)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--pid", help="pid of the process, or comma-separated pids of a group's instances")
    p.add_argument("--broker-pid", help="pid of the broker, or comma-separated pids of a cluster's nodes")
    p.set_defaults(f=cmd_wait_drain)
    p = sub.add_parser("metrics")
    p.add_argument("--url", required=True)
    p.set_defaults(f=cmd_metrics)
    p = sub.add_parser("rss")
    p.add_argument("--pid", type=int, required=True)
    p.set_defaults(f=cmd_rss)
    p = sub.add_parser("sample")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_sample)
    p = sub.add_parser("describe")
    p.add_argument("--file", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.set_defaults(f=cmd_describe)
    p = sub.add_parser("latency")
    p.add_argument("--inputs", required=True)
    p.add_argument("--outputs", default="-")
    p.add_argument("--warmup", type=float, default=5.0)
    p.set_defaults(f=cmd_latency)
    p = sub.add_parser("perf-summary")
    p.add_argument("report")
    p.set_defaults(f=cmd_perf_summary)
    p = sub.add_parser("summary")
    p.add_argument("runs")
    p.add_argument("--machine")
    p.add_argument("--params")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(f=cmd_summary)
    a = ap.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
