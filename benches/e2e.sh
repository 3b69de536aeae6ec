#!/usr/bin/env bash
# benches/e2e.sh — end-to-end benchmarks of `aepiot-stream run` on a real Apache Kafka broker
# (issue 6): drain throughput beside a no-op passthrough, latency at a fixed offered rate, memory
# with 1M devices. A benchmark: timings are never asserted. CI (scripts/test.sh) runs only
# --smoke, a tiny version that checks the harness and that every run drained and committed.
#
# drain    One input topic, 12 partitions, preloaded once with
#            simulate --rate 0 --count EVENTS --devices DEVICES --profile city --seed 1
#          (2M events, 100k devices). One unmeasured warm-up drain each of `run` and
#          `passthrough` (the broker's JIT). Then, for each run and each variant (interleaved: run 1 of
#          every variant, then run 2, ...), a fresh output topic (12 partitions), dead-letter
#          topic (3) and consumer group (so it starts at the earliest offset), and the timer
#          starts just before the process is started:
#            run               aepiot-stream run, default settings (at_least_once, changelog on)
#            passthrough       aepiot-stream passthrough (hidden subcommand, src/passthrough.rs):
#                              `run` with the engine taken out: the same bytes to the output,
#                              the same pipeline (partition tasks, producer, acks, offsets),
#                              no processing — the practical limit of broker + client
#            run-eos           run with AEPIOT_PROCESSING_GUARANTEE=exactly_once
#            passthrough-eos   passthrough with exactly_once (transactions every 100 ms)
#            run-no-changelog  run with AEPIOT_STATE_CHANGELOG=false
#          Schema Registry input (issue 29; not in the default list): the same preloaded events
#          re-encoded once, before the runs, by confluent-kafka's own serializers
#          (tests/fixtures/sr_clients.py transcode: same keys, partitions and order) into a topic
#          per format, against a registry (SCHEMA_REGISTRY_URL, else scripts/registry.sh on
#          REGISTRY_PORT 19783, started and stopped like the broker):
#            run-avro          run on the Avro input (AvroSerializer, the v1 event schema)
#            run-protobuf      run on the Protobuf input (ProtobufSerializer, message index [1])
#            run-jsonschema    run on the JSON Schema input (JSONSerializer)
#          e.g. --drain-variants "run run-avro run-protobuf": Avro's drain against JSON's, same run.
#          "Done" = every input record processed (sum of aepiot_events_total == EVENTS) and every
#          output acknowledged: the first /metrics poll (every 50 ms) at which
#          aepiot_processing_latency_seconds_count reached its final value (unchanged for 2 s
#          afterwards; see e2e_stats.py wait-drain for why not "== success + invalid"). Then
#          SIGTERM, and the group's committed offsets must equal the input's end offsets
#          (ConsumerGroupCommand --describe): offsets are stored only once all outputs up to them
#          are acknowledged, so this proves nothing was left unacknowledged. Polling committed
#          offsets instead would quantise the time to the 1 s auto-commit interval.
#          Reported: events/s = EVENTS / seconds from process start (start-up, group join and
#          the changelog's creation included), steady events/s from the first processed record,
#          per-thread CPU seconds of the process, the broker's CPU seconds, the machine's busy
#          share and the CPU seconds of everything else on the machine during the run.
#          Ratios per run: run/passthrough, run-eos/passthrough-eos, run-eos/run.
# latency  Fresh input and output topics (12 each), both with message.timestamp.type=LogAppendTime;
#          the processor is started and joined first, then
#            simulate --rate RATE --duration DURATION --devices 100000 --profile city --seed RUN
#          (10k events/s for 60 s; simulate fetches the topic's metadata before its clock starts,
#          so the rate holds from the first event instead of a burst after the connection). One
#          unmeasured 20 s run first (bench "latency-warmup"): the broker's JIT, as for drain.
#          Afterwards the input is read with kcat -f '%p %o %T %s' and
#          the output with kcat -f '%T %s'; each output's `source` (partition, offset) names its
#          input. Three latencies per output, from the same records of the same run:
#            input path   input append time - the event's `timestamp` (simulate stamps it as it
#                         produces the event): load generator, its producer and the broker, no
#                         processor; the noise floor of this machine
#            processor    output append time - input append time: what the processor adds
#            end to end   output append time - the event's `timestamp`
#          p50/p90/p99/p99.9/max over all outputs and after the first 5 s. Variants
#          (--latency-variants): run (default settings), run-linger0 (AEPIOT_KAFKA__LINGER_MS=0),
#          run-eos (exactly_once; output read with read_committed); run-appendtime is the same as
#          run (kept for older command lines: every run now has the input path beside it).
# Extra variants (for drain or latency) to try producer settings through the `[kafka]` overlay:
#   run-linger0 / run-linger1 / run-linger20 (AEPIOT_KAFKA__LINGER_MS=0/1/20; default 5),
#   run-commitMS / run-eos-commitMS (AEPIOT_COMMIT_INTERVAL_MS=MS, at-least-once / exactly-once),
#   run-zstd / run-uncompressed (AEPIOT_KAFKA__COMPRESSION_TYPE=zstd/none; default lz4),
#   run-prefetch (consumer prefetch bounded: queued.min.messages=20000,
#   queued.max.messages.kbytes=16384 (both per partition, as the pipeline splits the partition
#   queues), fetch.queue.backoff.ms=100; librdkafka defaults 100000, 65536, 1000),
#   run-jemalloc (jemalloc through LD_PRELOAD, for Rust and librdkafka alike; needs the Debian
#   package libjemalloc2, or JEMALLOC=/path/to/libjemalloc.so; how jemalloc was first measured
#   against glibc malloc: the default build now links it in, so this matters only with
#   AEPIOT_BIN set to a `--no-default-features` build),
#   run-trace001 / run-trace1 (`[tracing]` on, sample_ratio 0.01 / 1.0, spans exported to
#   TRACE_OTLP_ENDPOINT, default scripts/jaeger.sh's http://127.0.0.1:21118/v1/traces: start it
#   first), run-trace001-down / run-trace1-down (the same with the collector down: a closed port,
#   TRACE_DOWN_PORT (21199); every span takes the drop path). `run` is tracing off (the default);
#   the build without the feature is the commit before it, through AEPIOT_BIN.
# memory   Fresh input (12); the processor is started and joined, RSS (VmRSS, /proc/PID/status)
#          is taken 2 s later ("before"), then
#            simulate --rate 0 --count MEM_COUNT --devices MEM_DEVICES --profile city --seed RUN
#          (3M events over 1M devices: the city generator picks devices at random, so ~95% of
#          them appear, 1 - e^-3; the exact number is sum(aepiot_state_devices), reported with the
#          expected coverage) and RSS once drained ("after"), with VmHWM (peak) and the state's
#          device and cache-entry counts. Growth = after - before. --memory-rate R offers the
#          events at R/s instead of as fast as possible (default 0): at full speed the processor
#          lags the producer, so librdkafka's prefetch queues (per partition: the pipeline
#          splits each partition's queue) fill up and count in the RSS too. A time series
#          (VmRSS, devices, cache entries, events; every 2 s) goes to WORK/memory/*.samples.jsonl
#          (every 10 s of it into the results).
#
# Every measured run first waits (up to --quiet-wait s, 600) for the 1-minute load average to be
# below --max-load (1.5), and records the load average before and after it; the machine's other
# CPU use during the run is recorded too (other_cpu_s). Once a wait has timed out (a machine busy
# with other work), later runs wait at most --busy-wait s (60) each, so that a busy machine does
# not make the benchmark take hours; such runs are flagged "quiet": false.
#
# Usage: benches/e2e.sh [--smoke] [--benches "drain latency memory"] [--runs N]
#          [--drain-variants "run passthrough run-eos passthrough-eos run-no-changelog"]
#          [--events N] [--devices N] [--latency-runs N] [--latency-rate R]
#          [--latency-duration S] [--latency-variants "run"] [--memory-runs N]
#          [--memory-devices N] [--memory-count N] [--memory-rate R] [--memory-variants "run"]
#          [--max-load L] [--quiet-wait S] [--busy-wait S]
#          [--perf] [--out FILE]
#   defaults: --runs 3, --events 2000000, --devices 100000, --latency-runs 1, --latency-rate 10000,
#   --latency-duration 60, --memory-runs 1, --memory-devices 1000000, --memory-count 3000000,
#   --out bench-results.json (repository root; git-ignored). Results are also written after
#   every run, so an interrupted benchmark keeps what it measured.
#   --perf     one extra processor drain (bench "drain-profile", not in the medians) under
#              `perf record -F 999 -p PID` for 10 s from 4 s after start, of the `profiling`
#              build (Cargo.toml: release code with line tables, so symbols resolve to files and
#              lines; flat profile: no frame pointers); reports by thread (WORK/perf-run-threads.txt)
#              and by thread, library and symbol (WORK/perf-run.txt); the top 40 lines of each and
#              the shares by thread and category (e2e_stats.py perf-summary) go into the results
#              (bench "perf").
#   --cluster  on a 3-node cluster (scripts/kafka.sh cluster: RF 3, min.insync.replicas=2, every
#              topic replicated) instead of a single broker: the figures of issue 26 (drain and
#              the processor's p99 at 10k events/s beside the single node). The cluster's ports:
#              KAFKA_CLUSTER_BASE_PORT (20140: nodes 20141-20143, controllers 20151-20153), data
#              KAFKA_CLUSTER_DIR (/tmp/aepiot-kafka-bench-cluster); started and stopped like the
#              broker; broker CPU is the sum over the three nodes.
#   --smoke    a tiny version (20k events, 1k devices, 1 run, latency 2k/s for 8 s, memory 20k
#              devices, no load wait, no warm-up) to check that the harness works; its figures
#              mean nothing. Exits 1 if any run is not ok. CI runs it (scripts/test.sh).
#   A run is ok only if the process exited 0 after its SIGTERM and, after every run (drain,
#   latency and memory alike), the group's committed offsets equal the input's end offsets
#   (ConsumerGroupCommand --describe, field "committed" of the run's record); a latency run also
#   needs every URL record read back and matched to its input (as many as `success` events).
#
# Environment:
#   KAFKA_PORT=19592, KAFKA_DATA_DIR=/tmp/aepiot-kafka-bench: the broker (scripts/kafka.sh),
#       started if not running, and then stopped at the end (a broker left idling skews the next
#       timing on 2 cores); one that was already running is left running, as is one started
#       with KEEP_BROKER=1. A broker of its own keeps other users' traffic out of the figures.
#   BENCH_WORK_DIR=/tmp/aepiot-e2e-bench: logs, per-run JSON, kcat dumps (deleted after use).
#   AEPIOT_BIN: binary to use; default target/release/aepiot-stream (built with
#       `cargo build --release` if missing); copied to BENCH_WORK_DIR first so that a concurrent
#       rebuild cannot change it mid-benchmark.
#   AEPIOT_BIN_B: a second binary, for an A/B in one run: variant `run-b` is `run` with it
#       (for example `--drain-variants "run run-b"` with AEPIOT_BIN_B an older build: the two
#       alternate run by run, so the machine's drift falls on both alike). Copied like AEPIOT_BIN.
#   AEPIOT_PROFILING_BIN: the binary of the --perf run; default target/profiling/aepiot-stream
#       (built with `cargo build --profile profiling` if missing), copied like AEPIOT_BIN.
#   METRICS_PORT=19610: where the measured process serves /metrics.
#
# Needs: bash, python3, kcat, Java (scripts/kafka.sh), perf for --perf; for the run-avro,
# run-protobuf and run-jsonschema variants confluent-kafka (scripts/install-ci-deps.sh) and Java
# for scripts/registry.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATS="$ROOT/benches/e2e_stats.py"
export KAFKA_PORT="${KAFKA_PORT:-19592}"
export KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-/tmp/aepiot-kafka-bench}"
WORK="${BENCH_WORK_DIR:-/tmp/aepiot-e2e-bench}"
METRICS_PORT="${METRICS_PORT:-19610}"
MURL="http://127.0.0.1:$METRICS_PORT"

BENCHES="drain latency memory"
RUNS=3 EVENTS=2000000 DEVICES=100000
DRAIN_VARIANTS="run passthrough run-eos passthrough-eos run-no-changelog"
LAT_RUNS=1 LAT_RATE=10000 LAT_DURATION=60 LAT_DEVICES=100000 LAT_VARIANTS="run"
MEM_RUNS=1 MEM_DEVICES=1000000 MEM_COUNT=3000000 MEM_RATE=0 MEM_VARIANTS="run"
MAX_LOAD=1.5 QUIET_WAIT=600 BUSY_WAIT=60 PERF=0 SMOKE=0 CLUSTER=0
OUT="$ROOT/bench-results.json"
OUT_SET=0
while (($#)); do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --cluster) CLUSTER=1; shift ;;
    --benches) BENCHES="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --drain-variants) DRAIN_VARIANTS="$2"; shift 2 ;;
    --events) EVENTS="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --latency-runs) LAT_RUNS="$2"; shift 2 ;;
    --latency-rate) LAT_RATE="$2"; shift 2 ;;
    --latency-duration) LAT_DURATION="$2"; shift 2 ;;
    --latency-variants) LAT_VARIANTS="$2"; shift 2 ;;
    --memory-runs) MEM_RUNS="$2"; shift 2 ;;
    --memory-devices) MEM_DEVICES="$2"; shift 2 ;;
    --memory-count) MEM_COUNT="$2"; shift 2 ;;
    --memory-rate) MEM_RATE="$2"; shift 2 ;;
    --memory-variants) MEM_VARIANTS="$2"; shift 2 ;;
    --max-load) MAX_LOAD="$2"; shift 2 ;;
    --quiet-wait) QUIET_WAIT="$2"; shift 2 ;;
    --busy-wait) BUSY_WAIT="$2"; shift 2 ;;
    --perf) PERF=1; shift ;;
    --out) OUT="$2"; OUT_SET=1; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if ((SMOKE)); then
  RUNS=1 EVENTS=20000 DEVICES=1000
  LAT_RUNS=1 LAT_RATE=2000 LAT_DURATION=8 LAT_DEVICES=1000
  MEM_RUNS=1 MEM_DEVICES=20000 MEM_COUNT=60000
  QUIET_WAIT=0
  ((OUT_SET)) || OUT="$ROOT/bench-results-smoke.json"
fi

if ((CLUSTER)); then
  # Every topic at the cluster's replication factor (3), min.insync.replicas=2.
  export KAFKA_CLUSTER_BASE_PORT="${KAFKA_CLUSTER_BASE_PORT:-20140}"
  export KAFKA_CLUSTER_DIR="${KAFKA_CLUSTER_DIR:-/tmp/aepiot-kafka-bench-cluster}"
  KAFKA=(bash "$ROOT/scripts/kafka.sh" cluster --nodes 3)
  KAFKA_DATA_DIR="$KAFKA_CLUSTER_DIR"
  KAFKA_KIND="3-node KRaft cluster, RF 3, min.insync.replicas 2"
else
  KAFKA=(bash "$ROOT/scripts/kafka.sh")
  KAFKA_KIND="single node KRaft"
fi

log() { echo "e2e.sh: $(date -u +%H:%M:%S) $*" >&2; }
die() { log "error: $*"; exit 1; }
for t in python3 kcat; do command -v "$t" >/dev/null || die "$t is needed"; done
((PERF)) && { command -v perf >/dev/null || die "perf is needed for --perf"; }

# ------------------------------------------------------------------ binary, broker
# bench_binary, bench_begin, load1, wait_quiet, create_topic, delete_topic, describe, stop_process,
# df_check, machine_json
source "$ROOT/benches/support/lib.sh"
bench_binary
"$BIN" passthrough --help >/dev/null 2>&1 || die "$SRC_BIN has no passthrough subcommand (rebuild)"
BIN_B="$WORK/aepiot-stream-b"
if [[ -n "${AEPIOT_BIN_B:-}" ]]; then
  cp "$AEPIOT_BIN_B" "$BIN_B.tmp" && mv "$BIN_B.tmp" "$BIN_B"
fi
PROFILING_BIN="$WORK/aepiot-stream-profiling"
if ((PERF)); then
  SRC_PROFILING_BIN="${AEPIOT_PROFILING_BIN:-$ROOT/target/profiling/aepiot-stream}"
  if [[ ! -x "$SRC_PROFILING_BIN" ]]; then
    log "building $SRC_PROFILING_BIN (cargo build --profile profiling; minutes the first time)"
    (cd "$ROOT" && cargo build --profile profiling --bin aepiot-stream)
  fi
  cp "$SRC_PROFILING_BIN" "$PROFILING_BIN.tmp" && mv "$PROFILING_BIN.tmp" "$PROFILING_BIN"
fi

STOP_BROKER=false
if ! "${KAFKA[@]}" status >/dev/null 2>&1 && [[ "${KEEP_BROKER:-0}" != 1 ]]; then
  STOP_BROKER=true
fi
"${KAFKA[@]}" start >&2
BROKERS="$("${KAFKA[@]}" bootstrap)"
if ((CLUSTER)); then  # the brokers' CPU is the sum over the nodes
  BROKER_PID="$(cat "$KAFKA_DATA_DIR"/node-*/kafka.pid | paste -sd, -)"
else
  BROKER_PID="$(cat "$KAFKA_DATA_DIR/kafka.pid")"
fi
# The Schema Registry of the run-avro/-protobuf/-jsonschema variants, only when one is asked for.
REGISTRY_URL="${SCHEMA_REGISTRY_URL:-}"
STOP_REGISTRY=false
REGISTRY=(env REGISTRY_PORT="${REGISTRY_PORT:-19783}" REGISTRY_DATA_DIR="${REGISTRY_DATA_DIR:-/tmp/aepiot-registry-bench}" bash "$ROOT/scripts/registry.sh")
if [[ " $BENCHES " == *" drain "* && " $DRAIN_VARIANTS " =~ \ run-(avro|protobuf|jsonschema)\  && -z "$REGISTRY_URL" ]]; then
  "${REGISTRY[@]}" status >/dev/null 2>&1 || STOP_REGISTRY=true
  "${REGISTRY[@]}" start >&2
  REGISTRY_URL="$("${REGISTRY[@]}" url)"
fi
# Called by bench_begin's exit trap after the processes and the broker.
bench_cleanup_extra() {
  if [[ "$STOP_REGISTRY" == true ]]; then "${REGISTRY[@]}" stop >&2 || true; fi
}
bench_begin

variant_env() { # VARIANT -> env assignments, one per line
  case "$1" in
    run|run-b|passthrough) ;;
    run-eos|passthrough-eos) echo "AEPIOT_PROCESSING_GUARANTEE=exactly_once" ;;
    run-no-changelog) echo "AEPIOT_STATE_CHANGELOG=false" ;;
    run-linger0) echo "AEPIOT_KAFKA__LINGER_MS=0" ;;
    run-commit*) echo "AEPIOT_COMMIT_INTERVAL_MS=${1#run-commit}" ;;
    run-eos-commit*) printf '%s\n' AEPIOT_PROCESSING_GUARANTEE=exactly_once \
      "AEPIOT_COMMIT_INTERVAL_MS=${1#run-eos-commit}" ;;
    run-linger1) echo "AEPIOT_KAFKA__LINGER_MS=1" ;;
    run-linger20) echo "AEPIOT_KAFKA__LINGER_MS=20" ;;
    run-zstd) echo "AEPIOT_KAFKA__COMPRESSION_TYPE=zstd" ;;
    run-uncompressed) echo "AEPIOT_KAFKA__COMPRESSION_TYPE=none" ;;
    run-prefetch) printf '%s\n' AEPIOT_KAFKA__QUEUED_MIN_MESSAGES=20000 \
      AEPIOT_KAFKA__QUEUED_MAX_MESSAGES_KBYTES=16384 AEPIOT_KAFKA__FETCH_QUEUE_BACKOFF_MS=100 ;;
    run-jemalloc) echo "LD_PRELOAD=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}" ;;
    run-appendtime) ;;
    run-avro|run-protobuf|run-jsonschema) echo "AEPIOT_SCHEMA_REGISTRY__URL=$REGISTRY_URL" ;;
    run-trace001|run-trace1|run-trace001-down|run-trace1-down)
      local ratio=0.01 endpoint="${TRACE_OTLP_ENDPOINT:-http://127.0.0.1:21118/v1/traces}"
      [[ "$1" == run-trace1* ]] && ratio=1.0
      [[ "$1" == *-down ]] && endpoint="http://127.0.0.1:${TRACE_DOWN_PORT:-21199}/v1/traces"
      printf '%s\n' "AEPIOT_TRACING__OTLP_ENDPOINT=$endpoint" "AEPIOT_TRACING__SAMPLE_RATIO=$ratio" ;;
    *) die "unknown variant $1" ;;
  esac
}

LAST_PID=
start_process() { # VARIANT INPUT OUTPUT DLQ GROUP LOG
  local variant="$1" envs=()
  mapfile -t envs < <(variant_env "$variant")
  case "$variant" in
    passthrough*)
      env "${envs[@]+"${envs[@]}"}" RUST_LOG=info "$BIN" passthrough --brokers "$BROKERS" \
        --input-topic "$2" --output-topic "$3" --group-id "$5" --metrics-addr "127.0.0.1:$METRICS_PORT" \
        >"$6" 2>&1 &
      ;;
    *)
      local bin="$BIN"
      if [[ "$variant" == run-b ]]; then
        [[ -x "$BIN_B" ]] || die "variant run-b needs AEPIOT_BIN_B"
        bin="$BIN_B"
      fi
      env "${envs[@]+"${envs[@]}"}" RUST_LOG=info "$bin" run --brokers "$BROKERS" \
        --input-topics "$2" --output-topic "$3" --dead-letter-topic "$4" --group-id "$5" \
        --metrics-addr "127.0.0.1:$METRICS_PORT" >"$6" 2>&1 &
      ;;
  esac
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# The fields of each run that `record` logs.
RECORD_KEYS="bench variant run ok seconds events_per_s steady_events_per_s load_before rss_growth_bytes state_devices"

MACHINE="$(machine_json)"
PARAMS="$(python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
  benches "$BENCHES" runs "$RUNS" events "$EVENTS" devices "$DEVICES" drain_variants "$DRAIN_VARIANTS" \
  latency_runs "$LAT_RUNS" latency_rate "$LAT_RATE" latency_duration_s "$LAT_DURATION" \
  latency_devices "$LAT_DEVICES" latency_variants "$LAT_VARIANTS" memory_runs "$MEM_RUNS" \
  memory_devices "$MEM_DEVICES" memory_count "$MEM_COUNT" max_load "$MAX_LOAD" smoke "$SMOKE")"

write_results() {
  python3 "$STATS" summary "$RUNS_FILE" --machine "$MACHINE" --params "$PARAMS" >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
}

# ------------------------------------------------------------------ drain
drain_one() { # VARIANT RUN INPUT [perf|warmup]
  local variant="$1" run="$2" in="$3" kind="${4:-}" perf=""
  [[ "$kind" == perf ]] && perf=1
  local group="e2e-$STAMP-$variant-r$run${kind:+-$kind}" dir="$WORK/drain"
  local out="$group-out" dlq="$group-dlq"
  mkdir -p "$dir"
  df_check
  create_topic "$out" 12
  create_topic "$dlq" 3
  wait_quiet
  local t0 pid res rc perf_pid=""
  t0="$(date +%s.%N)"
  if [[ -n "$perf" ]]; then
    BIN="$PROFILING_BIN" start_process "$variant" "$in" "$out" "$dlq" "$group" "$dir/$group.log"
  else
    start_process "$variant" "$in" "$out" "$dlq" "$group" "$dir/$group.log"
  fi
  pid=$LAST_PID
  if [[ -n "$perf" ]]; then
    (sleep 4; perf record -F 999 -p "$pid" -o "$WORK/perf-run.data" -- sleep 10 >"$WORK/perf-record.log" 2>&1) &
    perf_pid=$!
  fi
  res="$(python3 "$STATS" wait-drain --url "$MURL" --expect "$EVENTS" --t0 "$t0" --pid "$pid" \
    --broker-pid "$BROKER_PID")" || true
  [[ -n "$res" ]] || res='{"ok": false}'
  local load_after
  load_after="$(load1)"
  stop_process "$pid"
  rc=$LAST_RC
  [[ -n "$perf_pid" ]] && wait "$perf_pid" 2>/dev/null || true
  describe "$group" "$dir/$group.describe"
  local desc
  desc="$(python3 "$STATS" describe --file "$dir/$group.describe" --expect "$EVENTS")"
  local ok
  ok="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); d=json.loads(sys.argv[2]); print("true" if r.get("ok") and d["ok"] and sys.argv[3]=="0" else "false")' "$res" "$desc" "$rc")"
  [[ "$ok" == true ]] || log "drain $variant run $run NOT ok (rc $rc, describe $desc); log: $dir/$group.log"
  local bench=drain
  [[ "$kind" == perf ]] && bench=drain-profile
  [[ "$kind" == warmup ]] && bench=drain-warmup
  record "$res" "{\"bench\": \"$bench\", \"variant\": \"$variant\", \"run\": $run, \"ok\": $ok, \"exit_code\": $rc, \"load_before\": $LOAD_BEFORE, \"load_after\": $load_after, \"quiet\": $QUIET, \"quiet_waited_s\": $QUIET_WAITED, \"committed\": $desc, \"group\": \"$group\"}"
  delete_topic "$out"
  delete_topic "$dlq"
  [[ "$variant" == passthrough* ]] || delete_topic "$group-$in-changelog"
}

bench_drain() {
  local in="e2e-$STAMP-drain-in"
  create_topic "$in" 12
  log "drain: preloading $EVENTS events ($DEVICES devices, city) into $in"
  local sim
  sim="$("$BIN" simulate --brokers "$BROKERS" --topic "$in" --rate 0 --count "$EVENTS" \
    --devices "$DEVICES" --profile city --seed 1 2>"$WORK/simulate-drain.log")"
  log "drain: preloaded: $sim"
  record "$sim" '{"bench": "preload", "variant": "simulate", "run": 0, "ok": true}'
  local run v fmt
  for v in $DRAIN_VARIANTS; do
    fmt="$(format_of "$v")"
    [[ -n "$fmt" ]] || continue
    create_topic "$in-$fmt" 12
    log "drain: re-encoding the $EVENTS events as $fmt into $in-$fmt (confluent-kafka's serializer)"
    sim="$(python3 "$ROOT/tests/fixtures/sr_clients.py" --registry "$REGISTRY_URL" --bootstrap "$BROKERS" \
      transcode --from-topic "$in" --topic "$in-$fmt" --format "$fmt" --count "$EVENTS" \
      2>"$WORK/transcode-$fmt.log")" || die "transcode to $fmt failed: $(tail -n5 "$WORK/transcode-$fmt.log")"
    log "drain: re-encoded: $sim"
    record "$sim" "{\"bench\": \"preload\", \"variant\": \"$fmt\", \"run\": 0, \"ok\": true}"
  done
  # A freshly started broker is slower until the JVM has compiled its hot paths (the first
  # measured run was 20-30 % slower than the next ones): one unmeasured run of `run` and of
  # `passthrough` first.
  ((SMOKE)) || for v in run passthrough; do
    log "drain: warm-up, $v (not in the medians)"
    drain_one "$v" 0 "$in" warmup
  done
  for ((run = 1; run <= RUNS; run++)); do
    for v in $DRAIN_VARIANTS; do
      log "drain: run $run/$RUNS, $v"
      fmt="$(format_of "$v")"
      drain_one "$v" "$run" "$in${fmt:+-$fmt}"
    done
  done
  if ((PERF)); then
    log "drain: profile run (perf record, not in the medians)"
    drain_one run 0 "$in" perf
    perf report -i "$WORK/perf-run.data" --no-children --sort comm,dso,sym --stdio \
      >"$WORK/perf-run.txt" 2>/dev/null || true
    perf report -i "$WORK/perf-run.data" --no-children --sort comm --stdio \
      >"$WORK/perf-run-threads.txt" 2>/dev/null || true
    log "drain: perf report in $WORK/perf-run.txt"
    python3 "$STATS" perf-summary "$WORK/perf-run.txt" >"$WORK/perf-run-summary.json" || echo '{}' >"$WORK/perf-run-summary.json"
    record "$(python3 - "$WORK/perf-run-threads.txt" "$WORK/perf-run.txt" "$WORK/perf-run-summary.json" <<'EOF'
import json, sys
def top(path, n=40):
    try:
        with open(path) as f:
            return [l.rstrip() for l in f if l.strip() and not l.startswith("#")][:n]
    except OSError:
        return []
with open(sys.argv[3]) as f:
    summary = json.load(f)
print(json.dumps({"bench": "perf", "variant": "run", "run": 0, "ok": True, "summary": summary,
                  "by_thread": top(sys.argv[1]), "by_symbol": top(sys.argv[2])}))
EOF
)"
  fi
  for v in $DRAIN_VARIANTS; do
    fmt="$(format_of "$v")"
    [[ -z "$fmt" ]] || delete_topic "$in-$fmt"
  done
  delete_topic "$in"
}

# The input format of a drain variant: avro, protobuf or json (JSON Schema); empty for JSON.
format_of() {
  case "$1" in
    run-avro) echo avro ;;
    run-protobuf) echo protobuf ;;
    run-jsonschema) echo json ;;
  esac
}

# ------------------------------------------------------------------ latency
latency_one() { # VARIANT RUN [warmup]
  local variant="$1" run="$2" bench=latency duration="$LAT_DURATION"
  [[ "${3:-}" == warmup ]] && bench=latency-warmup duration=20
  local group="e2e-$STAMP-lat-$variant-r$run" dir="$WORK/latency"
  local in="$group-in" out="$group-out" dlq="$group-dlq"
  mkdir -p "$dir"
  df_check
  # Input with LogAppendTime: each output's latency splits into the input path (the event's own
  # `timestamp`, stamped by simulate as it produces -> the input's append) and the processor's
  # part (input append -> output append), from the same records of the same run.
  create_topic "$in" 12 --config message.timestamp.type=LogAppendTime
  create_topic "$out" 12 --config message.timestamp.type=LogAppendTime
  create_topic "$dlq" 3
  wait_quiet
  local t0 pid
  t0="$(date +%s.%N)"
  start_process "$variant" "$in" "$out" "$dlq" "$group" "$dir/$group.log"
  pid=$LAST_PID
  python3 "$STATS" wait-ready --url "$MURL" --partitions 12 >/dev/null || die "processor not ready: $dir/$group.log"
  sleep 1
  local sim sent
  sim="$("$BIN" simulate --brokers "$BROKERS" --topic "$in" --rate "$LAT_RATE" \
    --duration "$duration" --devices "$LAT_DEVICES" --profile city --seed "$run" 2>"$dir/$group.simulate.log")"
  sent="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["acked"])' "$sim")"
  local res
  res="$(python3 "$STATS" wait-drain --url "$MURL" --expect "$sent" --t0 "$t0" --pid "$pid" \
    --broker-pid "$BROKER_PID" --timeout 300)" || true
  [[ -n "$res" ]] || res='{"ok": false}'
  local load_after
  load_after="$(load1)"
  stop_process "$pid"
  local rc=$LAST_RC iso=()
  describe "$group" "$dir/$group.describe"
  local desc
  desc="$(python3 "$STATS" describe --file "$dir/$group.describe" --expect "$sent")"
  [[ "$variant" == run-eos ]] && iso=(-X isolation.level=read_committed)
  kcat -b "$BROKERS" -C -t "$in" -o beginning -e -q -f '%p %o %T %s\n' >"$dir/inputs.txt"
  local lat
  lat="$(kcat -b "$BROKERS" -C -t "$out" -o beginning -e -q "${iso[@]+"${iso[@]}"}" -f '%T %s\n' \
    | python3 "$STATS" latency --inputs "$dir/inputs.txt")"
  rm -f "$dir/inputs.txt"
  local ok
  # Every output read back and matched: as many as the process counted `success` events.
  ok="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); l=json.loads(sys.argv[2]); d=json.loads(sys.argv[4]); s=(r.get("metrics") or {}).get("events", {}).get("success", -1); print("true" if r.get("ok") and sys.argv[3]=="0" and d["ok"] and l["unmatched"]==0 and l["all"]["count"]==s>0 else "false")' "$res" "$lat" "$rc" "$desc")"
  [[ "$ok" == true ]] || log "latency $variant run $run NOT ok (rc $rc, describe $desc); log: $dir/$group.log"
  record "{\"drain\": $res}" "{\"bench\": \"$bench\", \"variant\": \"$variant\", \"run\": $run, \"ok\": $ok, \"exit_code\": $rc, \"load_before\": $LOAD_BEFORE, \"load_after\": $load_after, \"quiet\": $QUIET, \"simulate\": $sim, \"latency\": $lat, \"committed\": $desc}"
  delete_topic "$in"; delete_topic "$out"; delete_topic "$dlq"; delete_topic "$group-$in-changelog"
}

bench_latency() {
  local run v
  # As for drain: the first run on a freshly started broker met a JVM still compiling its hot
  # paths (2026-11-30: p99.9 270 ms against 21-33 ms in the next two runs, the input path alike).
  # One unmeasured 20 s run of the first variant first.
  if ! ((SMOKE)); then
    log "latency: warm-up, ${LAT_VARIANTS%% *}, 20 s (not in the figures)"
    latency_one "${LAT_VARIANTS%% *}" 0 warmup
  fi
  for ((run = 1; run <= LAT_RUNS; run++)); do
    for v in $LAT_VARIANTS; do
      log "latency: run $run/$LAT_RUNS, $v, $LAT_RATE events/s for ${LAT_DURATION}s"
      latency_one "$v" "$run"
    done
  done
}

# ------------------------------------------------------------------ memory
memory_one() { # VARIANT RUN
  local variant="$1" run="$2" group="e2e-$STAMP-mem-$1-r$2" dir="$WORK/memory"
  local in="$group-in" out="$group-out" dlq="$group-dlq"
  mkdir -p "$dir"
  df_check
  create_topic "$in" 12; create_topic "$out" 12; create_topic "$dlq" 3
  wait_quiet
  local t0 pid
  t0="$(date +%s.%N)"
  start_process "$variant" "$in" "$out" "$dlq" "$group" "$dir/$group.log"
  pid=$LAST_PID
  python3 "$STATS" wait-ready --url "$MURL" --partitions 12 >/dev/null || die "processor not ready: $dir/$group.log"
  sleep 2
  local before mbefore
  before="$(python3 "$STATS" rss --pid "$pid")"
  mbefore="$(python3 "$STATS" metrics --url "$MURL")"
  python3 "$STATS" sample --pid "$pid" --url "$MURL" --every 2 --out "$dir/$group.samples.jsonl" &
  local sampler=$!
  local sim sent
  sim="$("$BIN" simulate --brokers "$BROKERS" --topic "$in" --rate "$MEM_RATE" --count "$MEM_COUNT" \
    --devices "$MEM_DEVICES" --profile city --seed "$run" 2>"$dir/$group.simulate.log")"
  sent="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["acked"])' "$sim")"
  local res
  res="$(python3 "$STATS" wait-drain --url "$MURL" --expect "$sent" --t0 "$t0" --pid "$pid" \
    --broker-pid "$BROKER_PID" --timeout 900)" || true
  [[ -n "$res" ]] || res='{"ok": false}'
  local after mafter
  after="$(python3 "$STATS" rss --pid "$pid")"
  mafter="$(python3 "$STATS" metrics --url "$MURL")"
  local load_after
  load_after="$(load1)"
  stop_process "$pid"
  local rc=$LAST_RC
  wait "$sampler" 2>/dev/null || true
  describe "$group" "$dir/$group.describe"
  local desc
  desc="$(python3 "$STATS" describe --file "$dir/$group.describe" --expect "$sent")"
  local extra
  extra="$(python3 - "$before" "$after" "$mafter" "$res" "$MEM_DEVICES" "$MEM_COUNT" "$rc" "$dir/$group.samples.jsonl" "$desc" <<'EOF'
import json, sys
b, a, m, r = (json.loads(x) for x in sys.argv[1:5])
n, c, rc = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
committed = json.loads(sys.argv[9])
samples = []
try:
    with open(sys.argv[8]) as f:
        samples = [json.loads(l) for l in f if l.strip()]
except OSError:
    pass
# Every 5th sample (10 s apart) goes into the results; the file has them all.
series = [s for i, s in enumerate(samples) if i % 5 == 0 or i == len(samples) - 1]
growth = a["VmRSS"] - b["VmRSS"]
print(json.dumps({
  "ok": bool(r.get("ok")) and rc == 0 and committed["ok"],
  "committed": committed,
  "rss_growth_bytes": growth,
  "state_devices": m["state_devices"],
  "state_cache_entries": m["state_cache_entries"],
  "coverage": round(m["state_devices"] / n, 4),
  "expected_coverage": round(1 - (1 - 1 / n) ** c, 4),
  "rss_growth_per_device_bytes": round(growth / max(m["state_devices"], 1), 1),
  "peak_rss_bytes": a.get("VmHWM"),
  "series": series,
}))
EOF
)"
  python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["ok"] else 1)' "$extra" \
    || log "memory $variant run $run NOT ok (rc $rc, describe $desc); log: $dir/$group.log"
  record "{\"drain\": $res}" "$extra" "{\"bench\": \"memory\", \"variant\": \"$variant\", \"run\": $run, \"rate\": $MEM_RATE, \"exit_code\": $rc, \"load_before\": $LOAD_BEFORE, \"load_after\": $load_after, \"quiet\": $QUIET, \"simulate\": $sim, \"rss_before\": $before, \"rss_after\": $after, \"metrics_before\": $mbefore, \"metrics_after\": $mafter}"
  delete_topic "$in"; delete_topic "$out"; delete_topic "$dlq"; delete_topic "$group-$in-changelog"
}

bench_memory() {
  local run v
  for ((run = 1; run <= MEM_RUNS; run++)); do
    for v in $MEM_VARIANTS; do
      log "memory: run $run/$MEM_RUNS, $v, $MEM_COUNT events over $MEM_DEVICES devices (rate $MEM_RATE)"
      memory_one "$v" "$run"
    done
  done
}

# ------------------------------------------------------------------ main
log "machine: $MACHINE"
log "runs file: $RUNS_FILE; results: $OUT"
for b in $BENCHES; do
  case "$b" in
    drain) bench_drain ;;
    latency) bench_latency ;;
    memory) bench_memory ;;
    *) die "unknown bench $b" ;;
  esac
done
write_results
python3 "$STATS" summary "$RUNS_FILE" --machine "$MACHINE" --params "$PARAMS" --markdown >/dev/null
log "done: $OUT"
# The smoke run is CI's check that the harness works: every run must have drained, committed and
# measured what it should.
if ((SMOKE)); then
  python3 - "$RUNS_FILE" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# Every measured run: ok, and its committed offsets checked and at the input's end.
measured = ("drain", "latency", "memory")
bad = [f'{r.get("bench")}/{r.get("variant")}' for r in runs
       if not r.get("ok") or (r.get("bench") in measured and not (r.get("committed") or {}).get("ok"))]
print(f"e2e.sh: smoke: {len(runs)} runs, {len(bad)} not ok {bad}", file=sys.stderr)
sys.exit(1 if bad or not runs else 0)
EOF
fi
