#!/usr/bin/env bash
# benches/rebalance.sh — rebalance protocols measured on a real Apache Kafka broker.
#
# For each protocol setting and each run, on fresh topics (input 12 partitions, output 12,
# dead letters 3) and a fresh consumer group:
#
#   t = -a few s  the state changelog topic is created (see docs/rebalance.md, finding 1), then
#                 instance A starts (`aepiot-stream run --emit-suppressed --metrics-addr ""`);
#                 the clock t0 starts once A has restored all 12 partitions
#   t = 0         `aepiot-stream simulate --rate R --duration D --devices 20000 --profile city
#                 --seed RUN` into the input
#   t = D/4       instance B starts (same group)            -> event "B joins"
#   t = D/2       instance C starts                          -> event "C joins"
#   t = 3D/4      B gets SIGTERM (clean leave)               -> event "B leaves"
#   t = D         the producer ends; once the group's committed offsets equal the input's end
#                 offsets (ConsumerGroupCommand --describe, LAG 0 everywhere) A and C get SIGTERM
#
# then reads the output and dead-letter topics back with kcat and computes, with
# benches/rebalance_stats.py: expected (sum of end offsets), total, distinct source
# (partition, offset) pairs, duplicates = total - distinct, lost = expected - distinct
# (must be 0), per-partition pauses from `processed_at` (longest gap minus the partition's
# median gap; max and median over partitions) and, per rebalance event, the longest time with
# no output on any partition ("stop-the-world"). One JSON line per run on stdout; all runs,
# a summary per setting and the machine go to the results file.
#
# Settings (env of the instances; processing_guarantee stays at_least_once, state_changelog at
# its default, true):
#   consumer                     AEPIOT_GROUP_PROTOCOL=consumer (KIP-848; the default)
#   classic-cooperative-sticky   AEPIOT_GROUP_PROTOCOL=classic
#                                AEPIOT_PARTITION_ASSIGNMENT_STRATEGY=cooperative-sticky
#   classic-range                AEPIOT_GROUP_PROTOCOL=classic
#                                AEPIOT_PARTITION_ASSIGNMENT_STRATEGY=range (eager)
# Runs are interleaved (run 1 of every setting, then run 2, ...) so that slow phases of a shared
# machine spread over the settings; run N uses --seed N for every setting.
#
# Usage: benches/rebalance.sh [--runs N] [--duration S] [--rate R] [--devices N]
#                             [--settings "consumer classic-cooperative-sticky classic-range"]
#                             [--out FILE] [--keep-topics] [--keep-raw]
#   --runs 3, --duration 40 (event times scale with it), --rate 5000, --devices 20000,
#   --out bench-results-rebalance.json (in the repository root).
#
# Environment:
#   KAFKA_PORT=19292, KAFKA_DATA_DIR=/tmp/aepiot-kafka-rebal   the broker (scripts/kafka.sh);
#       started if not running and then stopped at the end; one that was already running is
#       left running, as is one started with KEEP_BROKER=1. A dedicated broker keeps other
#       users' load off the figures.
#   BENCH_WORK_DIR=/tmp/aepiot-rebalance-bench   per-run logs, describe output, events, the
#       duplicates list (dups.tsv), and the raw topic dumps with --keep-raw.
#   REBALANCE_BIN   binary to use; default target/release/aepiot-stream (built with
#       `cargo build --release` if missing). It is copied into BENCH_WORK_DIR first, so a
#       concurrent rebuild cannot change it mid-benchmark.
#   DRAIN_TIMEOUT=300   seconds to wait for LAG 0 after the producer ends.
#   AEPIOT_*     passed on to every instance (e.g. AEPIOT_KAFKA__HEARTBEAT_INTERVAL_MS=1000 for
#       the classic settings); recorded in the results' params.instance_env. Never name a helper
#       variable AEPIOT_*: the processor rejects unknown configuration keys.
#   KAFKA_EXTRA_PROPS  broker properties, used when this script starts the broker (recorded).
#
# Results and their reading: docs/rebalance.md.
#
# Needs: bash, python3, kcat, Java (for scripts/kafka.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATS="$ROOT/benches/rebalance_stats.py"
export KAFKA_PORT="${KAFKA_PORT:-19292}"
export KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-/tmp/aepiot-kafka-rebal}"
KAFKA=(bash "$ROOT/scripts/kafka.sh")
WORK="${BENCH_WORK_DIR:-/tmp/aepiot-rebalance-bench}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-300}"

RUNS=3 DURATION=40 RATE=5000 DEVICES=20000
SETTINGS="consumer classic-cooperative-sticky classic-range"
OUT="$ROOT/bench-results-rebalance.json"
KEEP_TOPICS=0 KEEP_RAW=0
while (($#)); do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --settings) SETTINGS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --keep-topics) KEEP_TOPICS=1; shift ;;
    --keep-raw) KEEP_RAW=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "rebalance.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { echo "rebalance.sh: $(date -u +%H:%M:%S) $*" >&2; }
now_ms() { date +%s%3N; }
die() { log "error: $*"; exit 1; }

for t in python3 kcat; do command -v "$t" >/dev/null || die "$t is needed"; done

# ------------------------------------------------------------------ binary, broker
# bench_binary (the shell helpers of benches/support/lib.sh)
source "$ROOT/benches/support/lib.sh"
# Not AEPIOT_*: the processor reads every AEPIOT_* variable as configuration (unknown keys fail).
bench_binary "${REBALANCE_BIN:-}"

STOP_BROKER=false
if ! "${KAFKA[@]}" status >/dev/null 2>&1 && [[ "${KEEP_BROKER:-0}" != 1 ]]; then
  STOP_BROKER=true
fi
"${KAFKA[@]}" start >&2
BROKERS="$("${KAFKA[@]}" bootstrap)"

# ------------------------------------------------------------------ processes
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  if [[ "$STOP_BROKER" == true ]]; then "${KAFKA[@]}" stop >&2 || true; fi
}
trap cleanup EXIT

# Started in this shell (not in a command substitution), so that `wait` gets the exit codes.
LAST_PID=
start_instance() { # NAME DIR INPUT OUTPUT DLQ GROUP PROTOCOL STRATEGY -> pid in LAST_PID
  local name="$1" dir="$2"
  env AEPIOT_GROUP_PROTOCOL="$7" AEPIOT_PARTITION_ASSIGNMENT_STRATEGY="$8" \
    AEPIOT_PROCESSING_GUARANTEE=at_least_once AEPIOT_LOG_FORMAT=json RUST_LOG=info \
    "$BIN" run --brokers "$BROKERS" --input-topics "$3" --output-topic "$4" \
    --dead-letter-topic "$5" --group-id "$6" --emit-suppressed --metrics-addr "" \
    >"$dir/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

LAST_RC=
stop_instance() { # PID -> exit code in LAST_RC
  LAST_RC=0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" || LAST_RC=$?
}

sleep_until() { # epoch ms
  local d=$(( $1 - $(now_ms) ))
  (( d > 0 )) && sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"
  return 0
}

describe() { # GROUP FILE
  "${KAFKA[@]}" tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$BROKERS" --describe --group "$1" >"$2" 2>&1 || true
}

lag_zero() { # FILE TOPIC PARTITIONS: all partitions listed, every LAG 0
  awk -v t="$2" -v n="$3" '
    $2 == t && $3 ~ /^[0-9]+$/ { rows++; if ($6 != "0") bad++ }
    END { exit !(rows == n && bad == 0) }' "$1"
}

machine_json() {
  python3 - "$(nproc)" "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
    "$(uname -sr)" "$(awk '/MemTotal/ {print $2}' /proc/meminfo)" \
    "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(cd "$ROOT" && git status --porcelain 2>/dev/null | wc -l)" \
    "$("${KAFKA[@]}" info 2>/dev/null | sed -n 's/^kafka_version=//p' | head -n1)" \
    "$SRC_BIN" "$(sha256sum "$BIN" | cut -c1-16)" "$(date -u -r "$SRC_BIN" +%FT%TZ)" <<'EOF'
import json, sys
n, cpu, kernel, mem, commit, dirty, kafka, binary, sha, built = sys.argv[1:11]
print(json.dumps({"nproc": int(n), "cpu": cpu, "kernel": kernel, "mem_gib": round(int(mem) / 2**20, 1),
                  "git_commit": commit, "uncommitted_files": int(dirty), "kafka": kafka or None,
                  "binary": binary, "binary_sha256_16": sha, "binary_mtime": built}))
EOF
}

# ------------------------------------------------------------------ one run
RUNS_FILE="$WORK/runs.jsonl"
: >"$RUNS_FILE"

one_run() { # SETTING RUN
  local setting="$1" run="$2" protocol strategy
  case "$setting" in
    consumer) protocol=consumer strategy=cooperative-sticky ;; # strategy unused by KIP-848
    classic-cooperative-sticky) protocol=classic strategy=cooperative-sticky ;;
    classic-range) protocol=classic strategy=range ;;
    classic-roundrobin) protocol=classic strategy=roundrobin ;;
    *) die "unknown setting $setting" ;;
  esac
  local id="rb-${setting}-r${run}-$(date +%s)"
  local dir="$WORK/$id" in="$id-in" out="$id-out" dlq="$id-dlq" group="$id-g"
  mkdir -p "$dir"
  log "[$setting run $run] topics $id-*"
  "${KAFKA[@]}" create-topic "$in" 12 >/dev/null
  "${KAFKA[@]}" create-topic "$out" 12 >/dev/null
  "${KAFKA[@]}" create-topic "$dlq" 3 >/dev/null
  # The state changelog, as the processor would create it (`<group>-<input>-changelog`, same
  # partitions, compacted). Created here because an instance that creates it itself may restore
  # from it before its partitions have leaders, and then stops with "state restore failed ...
  # NotLeaderForPartition" (seen on this broker; see docs/rebalance.md).
  "${KAFKA[@]}" create-topic "$group-$in-changelog" 12 \
    --config cleanup.policy=compact --config min.compaction.lag.ms=0 >/dev/null

  local meta
  meta="$(printf '{"setting":"%s","group_protocol":"%s","partition_assignment_strategy":"%s","run":%d,"seed":%d,"rate":%d,"duration_s":%d,"devices":%d,"id":"%s"}' \
    "$setting" "$protocol" "$strategy" "$run" "$run" "$RATE" "$DURATION" "$DEVICES" "$id")"
  fail() { # message: record a failed run and go on
    log "[$setting run $run] FAILED: $1"
    python3 -c 'import json,sys; m=json.loads(sys.argv[1]); m["error"]=sys.argv[2]; print(json.dumps(m))' \
      "$meta" "$1" | tee -a "$RUNS_FILE"
  }

  local pa pb pc psim
  start_instance A "$dir" "$in" "$out" "$dlq" "$group" "$protocol" "$strategy"; pa=$LAST_PID
  local deadline=$(( $(now_ms) + 60000 ))
  # Ready: partitions assigned and every partition's state restored (12 "state restored").
  until (( $(grep -c '"state restored"' "$dir/A.log" || true) >= 12 )); do
    if ! kill -0 "$pa" 2>/dev/null || (( $(now_ms) > deadline )); then
      stop_instance "$pa"; PIDS=()
      delete_topics "$id"
      fail "instance A never got ready: $( (grep -E '"(WARN|ERROR)"' "$dir/A.log" || tail -n 3 "$dir/A.log") | tail -n 3 | tr '\n' ' ' | cut -c1-600)"
      return 0
    fi
    sleep 0.2
  done

  local t0 tb tc tl tp td
  t0="$(now_ms)"
  "$BIN" simulate --brokers "$BROKERS" --topic "$in" --rate "$RATE" --duration "$DURATION" \
    --devices "$DEVICES" --profile city --seed "$run" >"$dir/simulate.out" 2>"$dir/simulate.log" &
  psim=$!; PIDS+=("$psim")
  log "[$setting run $run] producing ${RATE}/s for ${DURATION}s"

  sleep_until $(( t0 + DURATION * 250 ))
  tb="$(now_ms)"; start_instance B "$dir" "$in" "$out" "$dlq" "$group" "$protocol" "$strategy"; pb=$LAST_PID
  sleep_until $(( t0 + DURATION * 500 ))
  tc="$(now_ms)"; start_instance C "$dir" "$in" "$out" "$dlq" "$group" "$protocol" "$strategy"; pc=$LAST_PID
  sleep_until $(( t0 + DURATION * 750 ))
  tl="$(now_ms)"; kill -TERM "$pb" 2>/dev/null || true
  local rc_sim=0 rc_a rc_b=0 rc_c
  wait "$psim" || rc_sim=$?
  tp="$(now_ms)"
  wait "$pb" || rc_b=$?

  local drained=0
  deadline=$(( $(now_ms) + DRAIN_TIMEOUT * 1000 ))
  while (( $(now_ms) < deadline )); do
    describe "$group" "$dir/describe.txt"
    if lag_zero "$dir/describe.txt" "$in" 12; then drained=1; break; fi
    sleep 1
  done
  td="$(now_ms)"
  stop_instance "$pa"; rc_a=$LAST_RC
  stop_instance "$pc"; rc_c=$LAST_RC
  PIDS=()
  log "[$setting run $run] drained=$drained exit codes sim=$rc_sim A=$rc_a B=$rc_b C=$rc_c"

  # td is when LAG 0 was observed; the describe itself takes a couple of seconds, so it
  # bounds the window from above.
  printf '{"t0_ms":%s,"producer_end_ms":%s,"drained_ms":%s,"events":[{"name":"B joins","t_ms":%s},{"name":"C joins","t_ms":%s},{"name":"B leaves","t_ms":%s}]}\n' \
    "$t0" "$tp" "$td" "$tb" "$tc" "$tl" >"$dir/events.json"

  kcat -b "$BROKERS" -C -t "$out" -o beginning -e -q -f '%s\n' >"$dir/output.jsonl"
  kcat -b "$BROKERS" -C -t "$dlq" -o beginning -e -q -f '%s\n' >"$dir/dlq.jsonl"

  meta="$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); m.update(loadavg_1m=float(open("/proc/loadavg").read().split()[0]), drained=bool(int(sys.argv[2])), exit_codes=dict(simulate=int(sys.argv[3]),A=int(sys.argv[4]),B=int(sys.argv[5]),C=int(sys.argv[6])), simulate=json.loads(sys.argv[7] or "null")); print(json.dumps(m))' \
    "$meta" "$drained" "$rc_sim" "$rc_a" "$rc_b" "$rc_c" "$(tail -n1 "$dir/simulate.out" 2>/dev/null)")"
  python3 "$STATS" run --outputs "$dir/output.jsonl" --dlq "$dir/dlq.jsonl" \
    --describe "$dir/describe.txt" --input-topic "$in" --events "$dir/events.json" \
    --log "A=$dir/A.log" --log "B=$dir/B.log" --log "C=$dir/C.log" \
    --meta "$meta" --dups-out "$dir/dups.tsv" | tee -a "$RUNS_FILE"

  ((KEEP_RAW)) || rm -f "$dir/output.jsonl" "$dir/dlq.jsonl"
  delete_topics "$id"
}

delete_topics() { # RUN-ID
  ((KEEP_TOPICS)) && return 0
  # TopicCommand --delete takes a regular expression: the run's four topics (with the
  # changelog, `<group>-<input>-changelog`).
  "${KAFKA[@]}" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKERS" \
    --delete --topic "$1-.*" >/dev/null 2>&1 || log "could not delete topics $1-*"
}

log "binary $BIN, broker $BROKERS, settings: $SETTINGS, runs $RUNS, ${RATE}/s for ${DURATION}s"
for run in $(seq 1 "$RUNS"); do
  for setting in $SETTINGS; do
    one_run "$setting" "$run"
  done
done

PARAMS="$(python3 - "$RUNS" "$RATE" "$DURATION" "$DEVICES" "$SETTINGS" <<'EOF'
import json, os, sys
runs, rate, duration, devices, settings = sys.argv[1:6]
d = float(duration)
print(json.dumps({
    "runs": int(runs), "rate": int(rate), "duration_s": d, "devices": int(devices),
    "profile": "city", "events_at_s": [d / 4, d / 2, 3 * d / 4], "settings": settings.split(),
    "processing_guarantee": "at_least_once", "emit_suppressed": True, "input_partitions": 12,
    # Anything else that shapes the figures: the instances' AEPIOT_* overrides and the
    # broker's extra properties (those it was started with, if this script started it).
    "instance_env": {k: v for k, v in os.environ.items() if k.startswith("AEPIOT_")},
    "kafka_extra_props": os.environ.get("KAFKA_EXTRA_PROPS", ""),
    "broker_group_properties": [
        l.strip() for l in open(os.path.join(os.environ["KAFKA_DATA_DIR"], "server.properties"))
        if l.startswith("group.")],
}))
EOF
)"
python3 "$STATS" summary "$RUNS_FILE" --machine "$(machine_json)" --params "$PARAMS" --markdown \
  >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "results in $OUT (per-run files in $WORK)"
