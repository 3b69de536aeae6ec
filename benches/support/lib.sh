# benches/support/lib.sh — shell helpers the end-to-end benchmarks share (benches/e2e.sh,
# benches/scale.sh): sourced, never run. The sourcing script sets, before calling them:
#   KAFKA (array: the scripts/kafka.sh command), BROKERS, KAFKA_DATA_DIR, KAFKA_KIND, ROOT, WORK,
#   MAX_LOAD, QUIET_WAIT, BUSY_WAIT, STOP_BROKER, RECORD_KEYS, and defines log (a line to
#   stderr), die (log, exit 1) and write_results.

# BIN: a copy under WORK of the binary given (or AEPIOT_BIN; default
# target/release/aepiot-stream, built if missing), so that a concurrent rebuild cannot change it
# mid-benchmark; SRC_BIN: where it came from.
bench_binary() { # [BINARY]
  mkdir -p "$WORK"
  SRC_BIN="${1:-${AEPIOT_BIN:-$ROOT/target/release/aepiot-stream}}"
  if [[ ! -x "$SRC_BIN" ]]; then
    log "building $SRC_BIN (cargo build --release; minutes the first time)"
    (cd "$ROOT" && cargo build --release)
  fi
  BIN="$WORK/aepiot-stream"
  cp "$SRC_BIN" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
}

# STAMP, an empty RUNS_FILE under WORK, and PIDS (the processes started): on exit each gets a
# SIGTERM, the broker is stopped if STOP_BROKER is true, then bench_cleanup_extra runs if the
# sourcing script defines it.
bench_begin() {
  STAMP="$(date +%s)"
  RUNS_FILE="$WORK/runs-$STAMP.jsonl"
  : >"$RUNS_FILE"
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
  if [[ "$STOP_BROKER" == true ]]; then "${KAFKA[@]}" stop >&2 || true; fi
  if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra; fi
}

# Appends one run record to RUNS_FILE: the JSON objects given as arguments merged left to right;
# logs its fields named in RECORD_KEYS (space-separated) as "<script>: result", then calls
# write_results (the sourcing script's: the results document from RUNS_FILE).
record() {
  python3 -c 'import json,sys
d={}
for a in sys.argv[1:]: d.update(json.loads(a))
print(json.dumps(d))' "$@" >>"$RUNS_FILE"
  tail -n1 "$RUNS_FILE" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(sys.argv[1] + ": result", json.dumps({k: d.get(k) for k in sys.argv[2].split()}))' "$(basename "$0")" "$RECORD_KEYS" >&2
  write_results
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# Waits until the 1-minute load average is below MAX_LOAD (at most QUIET_WAIT s); sets
# LOAD_BEFORE, QUIET (true/false) and QUIET_WAITED. Once a wait has timed out (a machine busy
# with other work), later waits last at most BUSY_WAIT s each.
wait_quiet() {
  local waited=0
  QUIET=true
  while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l >= m) }'; do
    if ((waited >= QUIET_WAIT)); then
      QUIET=false
      log "load $(load1) still >= $MAX_LOAD after ${QUIET_WAIT}s; measuring anyway (flagged)"
      ((QUIET_WAIT > BUSY_WAIT)) && QUIET_WAIT=$BUSY_WAIT
      break
    fi
    ((waited % 60 == 0)) && log "waiting for load < $MAX_LOAD (now $(load1), ${waited}s)"
    sleep 5
    waited=$((waited + 5))
  done
  LOAD_BEFORE="$(load1)"
  QUIET_WAITED=$waited
}

create_topic() { "${KAFKA[@]}" create-topic "$@" >/dev/null 2>&1 || die "cannot create topic $1"; }
delete_topic() { "${KAFKA[@]}" delete-topic "$1" >/dev/null 2>&1 || true; }

describe() { # GROUP FILE: the group's offsets, ConsumerGroupCommand --describe
  "${KAFKA[@]}" tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$BROKERS" --describe --group "$1" >"$2" 2>&1 || true
}

LAST_RC=
stop_process() { # PID: SIGTERM, then its exit code in LAST_RC
  LAST_RC=0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" || LAST_RC=$?
}

df_check() { # at least 5 GB free for the broker's data
  local avail
  avail="$(df -Pk "$KAFKA_DATA_DIR" | awk 'NR==2 { print $4 }')"
  ((avail > 5 * 1024 * 1024)) || die "less than 5 GB free under $KAFKA_DATA_DIR"
}

machine_json() { # the machine, the broker and the commit, as JSON
  python3 - "$BROKERS" "$ROOT" "$KAFKA_KIND" <<'EOF'
import json, os, platform, subprocess, sys
model = ""
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip(); break
mem = 0
with open("/proc/meminfo") as f:
    for line in f:
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) * 1024
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
print(json.dumps({"nproc": os.cpu_count(), "cpu_model": model, "mem_total_bytes": mem,
  "kernel": platform.release(), "hypervisor": sh("lscpu | sed -n 's/^Hypervisor vendor: *//p'"),
  "java": sh("java -version 2>&1 | head -n1"), "kafka": "4.4.0 (scripts/kafka.sh, " + sys.argv[3] + ")",
  "brokers": sys.argv[1], "aepiot_commit": sh(f"git -C '{sys.argv[2]}' rev-parse --short HEAD 2>/dev/null")}))
EOF
}
