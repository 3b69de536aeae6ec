#!/usr/bin/env bash
# benches/scale.sh — how each cost of `aepiot-stream run` grows as the work grows (issue 30): four
# curves on a real Apache Kafka broker of its own, each point the median of --runs runs (3). A
# benchmark: timings are never asserted. CI (scripts/test.sh) runs only --smoke, a tiny version
# that checks the harness and that every run drained and committed everything.
#
# devices     12 partitions, DEVICES distinct devices (10k 100k 1M 5M), EVENTS_PER_DEVICE (3)
#             events each on average (simulate --profile city picks devices at random: ~95 % of
#             them get an event, most at least two), limits.max_devices raised above DEVICES.
#             Measured: events/s, processor CPU µs/event, RSS after the drain, RSS and allocator
#             growth per device (against the same instance's idle figures, taken on an empty
#             input just before), and the changelog restore: a second instance of the group,
#             started once the first has stopped, restores every device; the time from its start
#             until every partition is restored, and per million devices.
# partitions  one instance, PARTITIONS input partitions (12 120 1200), 2M events over 100k
#             devices. Measured: RSS idle (all partitions assigned and restored, no input) and its
#             peak during the drain (VmHWM), the prefetched input's peak
#             (aepiot_consumer_prefetch_bytes), events/s, time from start to the first output and
#             to every partition assigned and restored, the time a second instance takes to own
#             half of them (restored), processor CPU µs/event.
# instances   1, 2, 4 instances in one group on 48 partitions, 2M events over 100k devices: the
#             instances join an empty input one by one (the time for the group to settle after
#             each join: partitions evenly owned and restored), then a drain by that many
#             instances started together. Measured: aggregate events/s and CPU µs/event over all
#             instances, the longest settle after a join.
# size        12 partitions, events of ~200 B, 2 KB, 20 KB (simulate --event-bytes: a long
#             location and a description of words), 1M, 300k and 50k of them over 100k devices.
#             Measured: events/s, MB/s in and out (the topics' log segments on the broker's disk,
#             lz4 batches as written, over the drain from the first output; the input's payload
#             bytes too), CPU µs/event.
#
# Every drain: a fresh output topic (12 partitions), dead-letter topic (3) and consumer group (so
# it starts at the earliest offset), the input preloaded once per point
# (simulate --rate 0 --profile city --seed 1); the timer starts just before the first instance
# starts; "done" as in benches/e2e.sh (e2e_stats.py wait-drain: every record processed and every
# output acknowledged; with several instances their metrics summed); then SIGTERM, and the
# group's committed offsets must equal the input's end offsets. A run is ok only if every
# instance exited 0 after its SIGTERM, the offsets were all committed, and every wait ended in
# time. "events/s" in the curves is counted from the first output (steady); the record of each
# run also has it from the process start (events_per_s) and the time to the first output.
#
# Usage: benches/scale.sh [--smoke] [--plot] [--curves "devices partitions instances size"]
#          [--runs N] [--devices "10000 100000 1000000 5000000"] [--events-per-device N]
#          [--partitions "12 120 1200"] [--instances "1 2 4"] [--instance-partitions N]
#          [--sizes "200 2000 20000"] [--size-events "1000000 300000 50000"] [--events N]
#          [--max-load L] [--quiet-wait S] [--busy-wait S] [--out FILE] [--plot-dir DIR]
#   --events: the events of the partitions and instances curves (2000000).
#   --out bench-results-scale.json (repository root, git-ignored); written after every run.
#   --plot     after the runs, one PNG per curve in --plot-dir (bench-results-scale-plots/):
#              every measure against the curve's x, medians as lines, runs as points (gnuplot;
#              scripts/install-ci-deps.sh installs it). `--plot` alone with an existing --out
#              (no --curves given and the file there) only draws it again.
#   --smoke    a tiny version (1 run, one point per curve: 1,000 devices, 70 partitions, 2
#              instances on 4 partitions, 2 KB events; a few thousand events each, no load wait)
#              to check that the harness works; its figures mean nothing. Exits 1 if any run is
#              not ok. CI runs it (scripts/test.sh) with --plot.
#
# Environment:
#   KAFKA_PORT=21210, KAFKA_DATA_DIR=/tmp/aepiot-kafka-scale: the broker (scripts/kafka.sh),
#       started if not running and stopped at the end (one already running, or KEEP_BROKER=1,
#       is left running).
#   METRICS_PORT=21220: instance i serves /metrics on METRICS_PORT + i (i = 0..3).
#   BENCH_WORK_DIR=/tmp/aepiot-scale-bench: logs, samples, the runs file.
#   AEPIOT_BIN: binary to use; default target/release/aepiot-stream (built if missing); copied
#       to BENCH_WORK_DIR first so that a concurrent rebuild cannot change it mid-benchmark.
#
# Needs: bash, python3, kcat, Java (scripts/kafka.sh), gnuplot for --plot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATS="$ROOT/benches/e2e_stats.py"
SCALE="$ROOT/benches/scale_stats.py"
export KAFKA_PORT="${KAFKA_PORT:-21210}"
export KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-/tmp/aepiot-kafka-scale}"
KAFKA=(bash "$ROOT/scripts/kafka.sh")
KAFKA_KIND="single node KRaft"
WORK="${BENCH_WORK_DIR:-/tmp/aepiot-scale-bench}"
METRICS_PORT="${METRICS_PORT:-21220}"

CURVES="devices partitions instances size" CURVES_SET=0
RUNS=3
DEVICE_POINTS="10000 100000 1000000 5000000" EVENTS_PER_DEVICE=3
PARTITION_POINTS="12 120 1200"
INSTANCE_POINTS="1 2 4" INSTANCE_PARTITIONS=48
SIZE_POINTS="200 2000 20000" SIZE_EVENTS="1000000 300000 50000"
EVENTS=2000000 DEVICES=100000 OUTPUT_PARTITIONS=12
MAX_LOAD=1.5 QUIET_WAIT=600 BUSY_WAIT=60 PLOT=0 SMOKE=0
OUT="$ROOT/bench-results-scale.json" OUT_SET=0
PLOT_DIR=""
while (($#)); do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --plot) PLOT=1; shift ;;
    --curves) CURVES="$2"; CURVES_SET=1; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --devices) DEVICE_POINTS="$2"; shift 2 ;;
    --events-per-device) EVENTS_PER_DEVICE="$2"; shift 2 ;;
    --partitions) PARTITION_POINTS="$2"; shift 2 ;;
    --instances) INSTANCE_POINTS="$2"; shift 2 ;;
    --instance-partitions) INSTANCE_PARTITIONS="$2"; shift 2 ;;
    --sizes) SIZE_POINTS="$2"; shift 2 ;;
    --size-events) SIZE_EVENTS="$2"; shift 2 ;;
    --events) EVENTS="$2"; shift 2 ;;
    --max-load) MAX_LOAD="$2"; shift 2 ;;
    --quiet-wait) QUIET_WAIT="$2"; shift 2 ;;
    --busy-wait) BUSY_WAIT="$2"; shift 2 ;;
    --out) OUT="$2"; OUT_SET=1; shift 2 ;;
    --plot-dir) PLOT_DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scale.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if ((SMOKE)); then
  # One point per curve, each exercising its code paths: the restore, 70 partitions (past the 64
  # arenas) and a second instance taking half, two instances draining together, padded events.
  RUNS=1 DEVICE_POINTS="1000" EVENTS_PER_DEVICE=2 PARTITION_POINTS="70"
  INSTANCE_POINTS="2" INSTANCE_PARTITIONS=4 SIZE_POINTS="2000" SIZE_EVENTS="1000"
  EVENTS=3000 DEVICES=500 OUTPUT_PARTITIONS=3 QUIET_WAIT=0
  ((OUT_SET)) || OUT="$ROOT/bench-results-scale-smoke.json"
fi
PLOT_DIR="${PLOT_DIR:-${OUT%.json}-plots}"

log() { echo "scale.sh: $(date -u +%H:%M:%S) $*" >&2; }
die() { log "error: $*"; exit 1; }

# --plot alone on existing results: draw them again.
if ((PLOT && !CURVES_SET && !SMOKE)) && [[ -f "$OUT" ]]; then
  python3 "$SCALE" plot "$OUT" --out-dir "$PLOT_DIR"
  exit 0
fi
for t in python3 kcat; do command -v "$t" >/dev/null || die "$t is needed"; done
((PLOT)) && { command -v gnuplot >/dev/null || die "gnuplot is needed for --plot (scripts/install-ci-deps.sh)"; }

# ------------------------------------------------------------------ binary, broker
# bench_binary, bench_begin, load1, wait_quiet, create_topic, delete_topic, describe, stop_process,
# df_check, machine_json
source "$ROOT/benches/support/lib.sh"
bench_binary
"$BIN" simulate --help | grep -q -- --event-bytes || die "$SRC_BIN has no simulate --event-bytes (rebuild)"

STOP_BROKER=false
if ! "${KAFKA[@]}" status >/dev/null 2>&1 && [[ "${KEEP_BROKER:-0}" != 1 ]]; then
  STOP_BROKER=true
fi
"${KAFKA[@]}" start >&2
BROKERS="$("${KAFKA[@]}" bootstrap)"
BROKER_PID="$(cat "$KAFKA_DATA_DIR/kafka.pid")"
bench_begin

MACHINE="$(machine_json)"
PARAMS="$(python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
  curves "$CURVES" runs "$RUNS" devices "$DEVICE_POINTS" events_per_device "$EVENTS_PER_DEVICE" \
  partitions "$PARTITION_POINTS" instances "$INSTANCE_POINTS" instance_partitions "$INSTANCE_PARTITIONS" \
  sizes "$SIZE_POINTS" size_events "$SIZE_EVENTS" events "$EVENTS" event_devices "$DEVICES" \
  max_load "$MAX_LOAD" smoke "$SMOKE")"

write_results() {
  python3 "$SCALE" summary "$RUNS_FILE" --machine "$MACHINE" --params "$PARAMS" >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
}

# The fields of each run that `record` logs.
RECORD_KEYS="curve x run ok steady_events_per_s cpu_us_per_event rss_idle_mb rss_drain_peak_mb restore_s settle_max_s"

url() { echo "http://127.0.0.1:$((METRICS_PORT + $1))"; }
join_by_comma() { local IFS=,; echo "$*"; }

LAST_PID=
start_instance() { # INDEX GROUP INPUT OUTPUT DLQ LOG [ENV=VALUE ...]
  local i="$1" group="$2" in="$3" out="$4" dlq="$5" logf="$6"
  shift 6
  # The instance creates its output and dead-letter topics: a JVM tool call fewer per run.
  env AEPIOT_CREATE_TOPICS=true AEPIOT_CREATE_TOPICS_PARTITIONS="$OUTPUT_PARTITIONS" "$@" \
    RUST_LOG=info "$BIN" run --brokers "$BROKERS" --input-topics "$in" --output-topic "$out" \
    --dead-letter-topic "$dlq" --group-id "$group" --metrics-addr "127.0.0.1:$((METRICS_PORT + i))" \
    >"$logf" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

stop_all() { # PID... -> STOP_OK (true when every one exited 0): SIGTERM to all, then the waits
  local p rc
  STOP_OK=true
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    rc=0
    wait "$p" || rc=$?
    ((rc == 0)) || { STOP_OK=false; log "instance $p exited $rc"; }
  done
}

preload() { # TOPIC PARTITIONS EVENTS DEVICES EVENT_BYTES -> PRELOAD (simulate's JSON)
  create_topic "$1" "$2"
  log "preloading $3 events ($4 devices, ~$5 B) into $1 ($2 partitions)"
  PRELOAD="$("$BIN" simulate --brokers "$BROKERS" --topic "$1" --rate 0 --count "$3" \
    --devices "$4" --profile city --seed 1 --event-bytes "$5" 2>"$WORK/simulate-$1.log")"
}

on_disk() { # TOPIC -> bytes of its partitions' log segments on the broker's disk (no indexes)
  find "$KAFKA_DATA_DIR"/data/ -path "*/$1-[0-9]*/*.log" -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}

# The group's instances join one by one, on INPUT but from its end (a fresh group with
# auto_offset_reset = latest: no records to read): SETTLE = JSON with the first instance's time to
# own and restore every partition, its idle RSS and allocation, and the settle time after each
# later join.
settle_phase() { # TAG INPUT P K [ENV=VALUE ...]
  local tag="$1" in="$2" p="$3" k="$4"
  shift 4
  local pids=() urls=() i t0 res ok=true first="null" idle="{}" idle_metrics="{}" settles=()
  for ((i = 0; i < k; i++)); do
    t0="$(date +%s.%N)"
    start_instance "$i" "$tag" "$in" "$tag-out" "$tag-dlq" "$WORK/$tag-$i.log" \
      AEPIOT_AUTO_OFFSET_RESET=latest "$@"
    pids+=("$LAST_PID"); urls+=("$(url "$i")")
    if res="$(python3 "$SCALE" settle --urls "$(join_by_comma "${urls[@]}")" --partitions "$p" --t0 "$t0" --timeout 300)"; then
      if ((i == 0)); then
        first="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$res")"
        sleep 2
        idle="$(python3 "$STATS" rss --pid "${pids[0]}")"
        idle_metrics="$(python3 "$STATS" metrics --url "${urls[0]}")"
      else
        settles+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$res")")
      fi
    else
      ok=false; log "$tag: instance $i did not settle ($res); logs: $WORK/$tag-*.log"; break
    fi
  done
  stop_all "${pids[@]}"
  [[ "$STOP_OK" == true ]] || ok=false
  SETTLE="$(python3 -c 'import json,sys
idle, m = json.loads(sys.argv[3]), json.loads(sys.argv[4])
settles = [float(s) for s in sys.argv[5:]]
print(json.dumps({"settle_ok": sys.argv[1] == "true", "t_assigned_s": json.loads(sys.argv[2]),
  "rss_idle": idle, "rss_idle_mb": round(idle["VmRSS"] / 1e6, 1) if idle else None,
  "allocated_idle": m.get("allocator_allocated_bytes"),
  "settle_s": settles, "settle_max_s": max(settles) if settles else None,
  "second_takes_half_s": settles[0] if settles else None}))' "$ok" "$first" "$idle" "$idle_metrics" "${settles[@]+"${settles[@]}"}")"
}

# K instances drain the preloaded INPUT (EXPECT records); with RESTORE=1 a second instance of the
# group then restores the state. DRAIN = JSON of the drain, its memory and the restore.
drain_phase() { # TAG P K INPUT EXPECT RESTORE [ENV=VALUE ...]
  local group="$1" p="$2" k="$3" in="$4" expect="$5" restore="$6"
  shift 6
  local out="$group-out" dlq="$group-dlq" pids=() urls=() i t0 res sampler
  df_check
  wait_quiet
  t0="$(date +%s.%N)"
  for ((i = 0; i < k; i++)); do
    start_instance "$i" "$group" "$in" "$out" "$dlq" "$WORK/$group-$i.log" "$@"
    pids+=("$LAST_PID"); urls+=("$(url "$i")")
  done
  python3 "$STATS" sample --pid "${pids[0]}" --url "${urls[0]}" --every 1 --out "$WORK/$group.samples.jsonl" &
  sampler=$!
  res="$(python3 "$STATS" wait-drain --url "$(join_by_comma "${urls[@]}")" --expect "$expect" --t0 "$t0" \
    --pid "$(join_by_comma "${pids[@]}")" --broker-pid "$BROKER_PID" --timeout 3600)" || true
  [[ -n "$res" ]] || res='{"ok": false}'
  local load_after after metrics
  load_after="$(load1)"
  after="$(python3 "$STATS" rss --pid "${pids[0]}" 2>/dev/null || echo '{}')"
  metrics="$(python3 "$STATS" metrics --url "${urls[0]}" 2>/dev/null || echo '{}')"
  stop_all "${pids[@]}"
  local stopped="$STOP_OK"
  wait "$sampler" 2>/dev/null || true
  describe "$group" "$WORK/$group.describe"
  local desc
  desc="$(python3 "$STATS" describe --file "$WORK/$group.describe" --expect "$expect")"
  local restored='{}'
  if ((restore)); then
    t0="$(date +%s.%N)"
    start_instance 0 "$group" "$in" "$out" "$dlq" "$WORK/$group-restore.log" "$@"
    local rpid="$LAST_PID"
    if res_r="$(python3 "$SCALE" settle --urls "$(url 0)" --partitions "$p" --t0 "$t0" --timeout 600)"; then
      restored="$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); m=json.loads(sys.argv[2]); print(json.dumps({"restore_ok": True, "restore_s": s["seconds"], "restore_partition_s_sum": m.get("state_restore_seconds"), "restored_devices": m.get("state_devices")}))' "$res_r" "$(python3 "$STATS" metrics --url "$(url 0)")")"
    else
      restored='{"restore_ok": false}'
      log "$group: the restoring instance did not restore every partition; log: $WORK/$group-restore.log"
    fi
    stop_all "$rpid"
    [[ "$STOP_OK" == true ]] || restored='{"restore_ok": false}'
  fi
  local in_disk out_disk
  in_disk="$(on_disk "$in")" out_disk="$(on_disk "$out")"
  DRAIN="$(python3 - "$res" "$after" "$metrics" "$desc" "$stopped" "$restored" "$in_disk" "$out_disk" "$WORK/$group.samples.jsonl" "$LOAD_BEFORE" "$load_after" "$QUIET" <<'EOF'
import json, sys
res, after, m, desc = (json.loads(x) for x in sys.argv[1:5])
stopped, restored = sys.argv[5] == "true", json.loads(sys.argv[6])
in_disk, out_disk = int(sys.argv[7]), int(sys.argv[8])
samples = []
try:
    with open(sys.argv[9]) as f:
        samples = [json.loads(l) for l in f if l.strip()]
except OSError:
    pass
window = (res["t_done"] - res["t_first"]) if res.get("ok") else None
prefetch = [s.get("prefetch") or 0 for s in samples]
d = {
    "drain": res, "committed": desc, "rss_after": after, "metrics_after": m, **restored,
    "drain_ok": bool(res.get("ok")) and desc.get("ok") and stopped and restored.get("restore_ok", True),
    "events_per_s": res.get("events_per_s"), "steady_events_per_s": res.get("steady_events_per_s"),
    "t_first_s": res.get("t_first"), "cpu_us_per_event": res.get("process_cpu_us_per_event"),
    "broker_cpu_us_per_event": res.get("broker_cpu_us_per_event"),
    "rss_drained_mb": round(after["VmRSS"] / 1e6, 1) if after else None,
    "rss_drain_peak_mb": round(after["VmHWM"] / 1e6, 1) if after else None,
    "prefetch_peak_mb": round(max(prefetch) / 1e6, 2) if prefetch else None,
    "input_disk_bytes": in_disk, "output_disk_bytes": out_disk,
    "mb_in_per_s": round(in_disk / window / 1e6, 2) if window else None,
    "mb_out_per_s": round(out_disk / window / 1e6, 2) if window else None,
    "load_before": float(sys.argv[10]), "load_after": float(sys.argv[11]), "quiet": sys.argv[12] == "true",
}
print(json.dumps(d))
EOF
)"
}

# Derived per-device and per-byte figures of one run, and its record.
record_run() { # CURVE X RUN (of SETTLE, DRAIN, PRELOAD)
  local curve="$1" x="$2" run="$3"
  record "$SETTLE" "$DRAIN" "$(python3 - "$SETTLE" "$DRAIN" "$PRELOAD" "$curve" "$x" "$run" "${EVENT_BYTES:-0}" <<'EOF'
import json, sys
s, d, pre = (json.loads(x) for x in sys.argv[1:4])
m = d.get("metrics_after") or {}
devices = m.get("state_devices") or 0
out = {"curve": sys.argv[4], "x": float(sys.argv[5]), "run": int(sys.argv[6]),
       "ok": bool(s.get("settle_ok", True) and d.get("drain_ok")), "preload": pre}
if devices and s.get("rss_idle") and d.get("rss_after"):
    out["rss_per_device_b"] = round((d["rss_after"]["VmRSS"] - s["rss_idle"]["VmRSS"]) / devices, 1)
if devices and s.get("allocated_idle") and m.get("allocator_allocated_bytes"):
    out["allocated_per_device_b"] = round((m["allocator_allocated_bytes"] - s["allocated_idle"]) / devices, 1)
if devices and d.get("restore_s") is not None:
    out["restore_s_per_million"] = round(d["restore_s"] / (devices / 1e6), 3)
size = float(sys.argv[7])
window = (d["drain"]["t_done"] - d["drain"]["t_first"]) if d.get("drain", {}).get("ok") else None
if size and window and pre.get("acked"):
    out["event_bytes"] = size
    out["payload_mb_in_per_s"] = round(pre["acked"] * size / window / 1e6, 2)
print(json.dumps(out))
EOF
)"
}

# ------------------------------------------------------------------ the curves
# Each point's topics (its input, and each run's output, dead letters and changelog) start with
# its prefix, and are deleted together once its runs are done (one call of Kafka's JVM tool).
curve_devices() {
  local d run pre
  for d in $DEVICE_POINTS; do
    pre="scale-$STAMP-devices-$d"
    local events=$((d * EVENTS_PER_DEVICE)) env=("AEPIOT_LIMITS__MAX_DEVICES=$((d + d / 5 + 1000))")
    preload "$pre-in" 12 "$events" "$d" 0
    for ((run = 1; run <= RUNS; run++)); do
      log "devices: $d, run $run/$RUNS"
      settle_phase "$pre-r$run-idle" "$pre-in" 12 1 "${env[@]}"
      drain_phase "$pre-r$run" 12 1 "$pre-in" "$events" 1 "${env[@]}"
      record_run devices "$d" "$run"
    done
    delete_topic "$pre-.*"
  done
}

curve_partitions() {
  local p run pre
  for p in $PARTITION_POINTS; do
    pre="scale-$STAMP-partitions-$p"
    preload "$pre-in" "$p" "$EVENTS" "$DEVICES" 0
    for ((run = 1; run <= RUNS; run++)); do
      log "partitions: $p, run $run/$RUNS"
      settle_phase "$pre-r$run-idle" "$pre-in" "$p" 2
      drain_phase "$pre-r$run" "$p" 1 "$pre-in" "$EVENTS" 0
      record_run partitions "$p" "$run"
    done
    delete_topic "$pre-.*"
  done
}

curve_instances() {
  local k run pre in="scale-$STAMP-instances-in"
  preload "$in" "$INSTANCE_PARTITIONS" "$EVENTS" "$DEVICES" 0
  for k in $INSTANCE_POINTS; do
    pre="scale-$STAMP-instances-$k"
    for ((run = 1; run <= RUNS; run++)); do
      log "instances: $k on $INSTANCE_PARTITIONS partitions, run $run/$RUNS"
      settle_phase "$pre-r$run-idle" "$in" "$INSTANCE_PARTITIONS" "$k"
      drain_phase "$pre-r$run" "$INSTANCE_PARTITIONS" "$k" "$in" "$EVENTS" 0
      record_run instances "$k" "$run"
    done
    delete_topic "$pre-.*"
  done
  delete_topic "$in"
}

curve_size() {
  local sizes=($SIZE_POINTS) counts=($SIZE_EVENTS) i run pre
  ((${#sizes[@]} == ${#counts[@]})) || die "--sizes and --size-events must have as many entries"
  SETTLE='{}'
  for i in "${!sizes[@]}"; do
    EVENT_BYTES="${sizes[$i]}"
    pre="scale-$STAMP-size-$EVENT_BYTES"
    preload "$pre-in" 12 "${counts[$i]}" "$DEVICES" "$EVENT_BYTES"
    for ((run = 1; run <= RUNS; run++)); do
      log "size: ~$EVENT_BYTES B, run $run/$RUNS"
      drain_phase "$pre-r$run" 12 1 "$pre-in" "${counts[$i]}" 0
      record_run size "$EVENT_BYTES" "$run"
    done
    delete_topic "$pre-.*"
  done
  EVENT_BYTES=0
}

# ------------------------------------------------------------------ main
log "machine: $MACHINE"
log "runs file: $RUNS_FILE; results: $OUT"
for c in $CURVES; do
  case "$c" in
    devices) curve_devices ;;
    partitions) curve_partitions ;;
    instances) curve_instances ;;
    size) curve_size ;;
    *) die "unknown curve $c" ;;
  esac
done
write_results
((PLOT)) && python3 "$SCALE" plot "$OUT" --out-dir "$PLOT_DIR" >&2
log "done: $OUT"
# Every run must have drained, committed and measured what it should (CI runs --smoke).
python3 - "$RUNS_FILE" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [f'{r.get("curve")} x={r.get("x")} run {r.get("run")}' for r in runs if not r.get("ok")]
print(f"scale.sh: {len(runs)} runs, {len(bad)} not ok {bad}", file=sys.stderr)
sys.exit(1 if bad or not runs else 0)
EOF
