#!/usr/bin/env bash
# benches/restore.sh — how long `run` takes to restore its device state from the changelog when it
# starts (issue 16: ~950k devices within 5 s). A benchmark: not run by CI.
#
# On a broker of its own: a 12-partition input preloaded with
#   simulate --rate 0 --count COUNT --devices DEVICES --profile city --seed 1
# (3M events over 1M devices: ~950k distinct devices reached), drained by one `run` (default
# settings: at-least-once, changelog on) and stopped with SIGTERM once every event is processed and
# acknowledged (its last state cuts are written on the way out). Then a second `run` in the same
# group starts: each partition reads its devices back from GROUP-INPUT-changelog before it
# processes anything. Reported, from the second instance's JSON log: per partition the records
# read, devices and seconds ("state restored"), the sums, and the wall time from the process start
# and from the first "restoring state from the changelog" line to the last "state restored"; the
# second instance's CPU seconds from its start to then (process_cpu_s: it reads no input before
# every partition is restored) and the broker's over the same time (broker_cpu_s).
#
# Usage: benches/restore.sh [--count N] [--devices N] [--perf]
#   --perf  the restoring instance is the `profiling` build (AEPIOT_PROFILING_BIN, default
#           target/profiling/aepiot-stream) under `perf record -F 999` from its start until every
#           partition is restored; flat report by thread, library and symbol in WORK/perf.txt.
#           Its times are a profile's, not the benchmark's.
# Environment: KAFKA_PORT (19596) and KAFKA_DATA_DIR (/tmp/aepiot-kafka-restore): a broker of its
# own, stopped at the end; AEPIOT_BIN (target/release/aepiot-stream, built if missing); WORK
# (/tmp/aepiot-restore). Results: JSON on stdout and in WORK/restore.json.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COUNT=3000000 DEVICES=1000000 PERF=0
while (($#)); do
  case "$1" in
    --count) COUNT="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --perf) PERF=1; shift ;;
    *) echo "restore.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
export KAFKA_PORT="${KAFKA_PORT:-19596}" KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-/tmp/aepiot-kafka-restore}"
WORK="${WORK:-/tmp/aepiot-restore}"
BIN="${AEPIOT_BIN:-$ROOT/target/release/aepiot-stream}"
KAFKA=(bash "$ROOT/scripts/kafka.sh")
STATS="$ROOT/benches/e2e_stats.py"
[[ -x "$BIN" ]] || (cd "$ROOT" && cargo build --release --locked)
rm -rf "$WORK" && mkdir -p "$WORK"
cp "$BIN" "$WORK/aepiot-stream" && BIN="$WORK/aepiot-stream"
if ((PERF)); then
  command -v perf >/dev/null || { echo "restore.sh: perf is needed for --perf" >&2; exit 2; }
  PROFILING_BIN="${AEPIOT_PROFILING_BIN:-$ROOT/target/profiling/aepiot-stream}"
  [[ -x "$PROFILING_BIN" ]] || (cd "$ROOT" && cargo build --profile profiling --locked)
fi
"${KAFKA[@]}" start >&2
trap '"${KAFKA[@]}" stop >&2 || true' EXIT
BROKERS="127.0.0.1:$KAFKA_PORT" STAMP="$(date +%s)"
IN="restore-$STAMP-in" GROUP="restore-$STAMP"
for t in "$IN:12" "$IN-out:12" "$IN-dlq:3"; do "${KAFKA[@]}" create-topic "${t%:*}" "${t#*:}" >&2; done
"$BIN" simulate --brokers "$BROKERS" --topic "$IN" --rate 0 --count "$COUNT" --devices "$DEVICES" \
  --profile city --seed 1 >"$WORK/simulate.json"

start() { # LOG PORT [BIN]
  RUST_LOG=info AEPIOT_LOG_FORMAT=json "${3:-$BIN}" run --brokers "$BROKERS" --input-topics "$IN" \
    --output-topic "$IN-out" --dead-letter-topic "$IN-dlq" --group-id "$GROUP" \
    --metrics-addr "127.0.0.1:$2" >"$1" 2>&1 &
  PID=$!
}
start "$WORK/first.log" 19620
python3 "$STATS" wait-drain --url http://127.0.0.1:19620 --expect "$COUNT" --t0 "$(date +%s.%N)" \
  --pid "$PID" --timeout 900 >"$WORK/first-drain.json" || { echo "first run did not drain: $WORK/first.log" >&2; exit 1; }
kill -TERM "$PID" && wait "$PID"

# CPU seconds (user + system) of a process so far.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
BROKER_PID="$(cat "$KAFKA_DATA_DIR/kafka.pid")"
broker_cpu0="$(cpu_s "$BROKER_PID")"
t0="$(date +%s.%N)"
PERF_PID=""
if ((PERF)); then
  start "$WORK/second.log" 19621 "$PROFILING_BIN"
  perf record -F 999 -p "$PID" -o "$WORK/perf.data" >"$WORK/perf-record.log" 2>&1 &
  PERF_PID=$!
else
  start "$WORK/second.log" 19621
fi
# Every partition restored (12 lines), or 300 s.
for _ in $(seq 3000); do
  (($(grep -c '"state restored"' "$WORK/second.log" || true) >= 12)) && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -n "$PERF_PID" ]]; then
  kill -INT "$PERF_PID" && wait "$PERF_PID" || true
  { perf report -i "$WORK/perf.data" --no-children --sort comm,dso,sym --stdio 2>/dev/null || true; } | head -80 >"$WORK/perf.txt"
  echo "restore.sh: profile of the restoring instance in $WORK/perf.txt" >&2
fi
# The processor's CPU from its start, the broker's over the same time: both are the restore's
# (the input is not read until every partition is restored, and nothing else runs).
process_cpu="$(cpu_s "$PID")" broker_cpu="$(awk -v a="$broker_cpu0" -v b="$(cpu_s "$BROKER_PID")" 'BEGIN { print b - a }')"
kill -TERM "$PID" 2>/dev/null && wait "$PID" || true

python3 - "$WORK/second.log" "$t0" "$COUNT" "$DEVICES" "$process_cpu" "$broker_cpu" <<'PY' | tee "$WORK/restore.json"
import datetime, json, re, sys
log, t0, count, devices = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
process_cpu, broker_cpu = float(sys.argv[5]), float(sys.argv[6])
def at(line):
    ts = re.sub(r"(\.\d{6})\d+", r"\1", line.get("timestamp", "")).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(ts).timestamp()
starts, done = [], []
for text in open(log):
    try:
        line = json.loads(text)
    except ValueError:
        continue
    f = line.get("fields", {})
    if f.get("message") == "restoring state from the changelog":
        starts.append(at(line))
    elif f.get("message") == "state restored":
        done.append((at(line), f))
ok = len(done) == 12
res = {
    "ok": ok, "count": count, "devices_offered": devices, "partitions": len(done),
    "records": sum(f.get("records", 0) for _, f in done),
    "devices": sum(f.get("devices", 0) for _, f in done),
    "max_partition_seconds": max((f.get("seconds", 0) for _, f in done), default=None),
    "sum_partition_seconds": round(sum(f.get("seconds", 0) for _, f in done), 3),
    "wall_s_from_first_restoring": round(max(t for t, _ in done) - min(starts), 3) if ok and starts else None,
    "wall_s_from_process_start": round(max(t for t, _ in done) - t0, 3) if ok else None,
    "process_cpu_s": round(process_cpu, 2), "broker_cpu_s": round(broker_cpu, 2),
    "per_partition": [{k: f.get(k) for k in ("partition", "records", "devices", "seconds")} for _, f in done],
}
print(json.dumps(res))
sys.exit(0 if ok else 1)
PY
