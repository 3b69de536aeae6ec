#!/usr/bin/env bash
# benches/soak.sh — a soak of `aepiot-stream run` on a real Apache Kafka broker, with crashes
# (issue 12). Not run by CI (it takes DURATION seconds); figures go to BENCHMARKS.md.
#
# Two instances (A and B) in one consumer group, default settings (at-least-once, state changelog
# on, emit_suppressed off), on a 12-partition input fed by
#   simulate --rate RATE --duration DURATION --devices DEVICES --profile city --seed 7
# (10k events/s for 30 minutes from 200k devices). Every KILL_EVERY seconds (600) instance A is
# SIGKILLed (no drain, no commit) and started again at once. B is never killed.
#
# Checked afterwards:
#   lost successes  every input that `aepiot-stream process` judges `success` (each partition read
#                   in offset order: devices are keyed, so a device's events are all in one
#                   partition, in the order `run` saw them) has a `success` record on the output
#                   topic. A replayed event that came out `cached` instead is a lost URL. Must be 0.
#   committed       the group's committed offsets reach the input's end offsets.
#   memory          B's RSS at the end within 10 % of its RSS at minute 5.
#   recovery        after each kill and restart of A, seconds until the group's lag is back under
#                   one second of events (RATE): per partition, the lag its owner reports
#                   (aepiot_consumer_lag: high watermark - next offset to process), or, for a
#                   partition nobody reports (moving, or held by the killed member), end offset -
#                   committed offset from the broker; and only once every partition has a live
#                   owner again. The broker's committed lag alone is no
#                   measure of catching up: offsets are committed every second, so it hovers
#                   around a second of events even when nothing is behind.
# Results: JSON on stdout and in WORK/soak.json.
#
# --static gives each instance a group_instance_id (static membership): a restarted instance then
# takes its partitions back at once; without it they wait for the broker to expire the killed
# member (its session timeout, 45 s).
#
# Static membership needs the classic protocol: --static --env AEPIOT_GROUP_PROTOCOL=classic.
# --env K=V passes a setting to both instances.
#
# --restart-after S starts A again S seconds after each kill instead of at once: B then takes all
# twelve partitions (restoring A's devices) and hands six back when A returns, the heaviest case
# for B's memory. Recovery is still counted from the kill.
#
# Usage: benches/soak.sh [--duration S] [--rate R] [--devices N] [--kill-every S] [--static]
#          [--restart-after S] [--env K=V ...]
# Environment: KAFKA_PORT (19694) and KAFKA_DATA_DIR (/tmp/aepiot-kafka-soak): a broker of its own,
# stopped at the end; AEPIOT_BIN (target/release/aepiot-stream, built if missing);
# WORK (/tmp/aepiot-soak).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION=1800 RATE=10000 DEVICES=200000 KILL_EVERY=600 STATIC=0 RESTART_AFTER=0 EXTRA_ENV=()
while (($#)); do
  case "$1" in
    --static) STATIC=1; shift ;;
    --env) EXTRA_ENV+=("$2"); shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --kill-every) KILL_EVERY="$2"; shift 2 ;;
    --restart-after) RESTART_AFTER="$2"; shift 2 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
export KAFKA_PORT="${KAFKA_PORT:-19694}" KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-/tmp/aepiot-kafka-soak}"
WORK="${WORK:-/tmp/aepiot-soak}"
BIN="${AEPIOT_BIN:-$ROOT/target/release/aepiot-stream}"
KAFKA=(bash "$ROOT/scripts/kafka.sh")
[[ -x "$BIN" ]] || (cd "$ROOT" && cargo build --release --locked)
rm -rf "$WORK" && mkdir -p "$WORK"
"${KAFKA[@]}" start >&2
BROKERS="$("${KAFKA[@]}" bootstrap)"
trap '"${KAFKA[@]}" stop >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true' EXIT

id="soak-$(date +%s)"
IN="$id-in" OUT="$id-out" DLQ="$id-dlq" GROUP="$id-group"
"${KAFKA[@]}" create-topic "$IN" 12 >&2
"${KAFKA[@]}" create-topic "$OUT" 12 >&2
"${KAFKA[@]}" create-topic "$DLQ" 3 >&2

declare -A PID PORT=([a]=19721 [b]=19722)
start() { # NAME
  local static=()
  ((STATIC)) && static=(AEPIOT_GROUP_INSTANCE_ID="soak-$1")
  env "${static[@]}" "${EXTRA_ENV[@]}" AEPIOT_LOG_FORMAT=json "$BIN" run --brokers "$BROKERS" --input-topics "$IN" --output-topic "$OUT" \
    --dead-letter-topic "$DLQ" --group-id "$GROUP" --metrics-addr "127.0.0.1:${PORT[$1]}" \
    >>"$WORK/$1.log" 2>&1 &
  PID[$1]=$!
}
describe_group() { # the group's partitions: ConsumerGroupCommand --describe, from the broker
  "${KAFKA[@]}" tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$BROKERS" --describe --group "$GROUP" 2>/dev/null
}
lag() { # the group's lag and how many partitions no live instance reports: each partition's lag
  # from the instance that owns it (aepiot_consumer_lag: high watermark - next offset to process),
  # else (nobody owns it: it is moving, or its owner was killed) from the broker (end offset -
  # committed offset).
  local reported
  reported="$(for p in "${PORT[@]}"; do curl -s --max-time 2 "127.0.0.1:$p/metrics" || true; done |
    sed -n 's/^aepiot_consumer_lag{.*partition="\([0-9]*\)".*} \([0-9]*\)$/\1 \2/p' | tr '\n' ' ')"
  describe_group |
    awk -v rep="$reported" '
      BEGIN { n = split(rep, f, " "); for (i = 1; i < n; i += 2) r[f[i]] = f[i + 1] }
      $3 ~ /^[0-9]+$/ && $5 ~ /^[0-9]+$/ {
        if ($3 in r) s += r[$3]; else if ($6 ~ /^[0-9]+$/) s += $6; else s += $5
        if (!($3 in r)) u++
      }
      END { print s + 0, u + 0 }'
}
committed_lag() { # end offsets - committed offsets, from the broker only (final check)
  describe_group |
    awk '$6 ~ /^[0-9]+$/ {s += $6} END {print s + 0}'
}
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }

start a
start b
sleep 10
"$BIN" simulate --brokers "$BROKERS" --topic "$IN" --profile city --devices "$DEVICES" \
  --rate "$RATE" --duration "$DURATION" --seed 7 >"$WORK/simulate.log" 2>&1 &
SIM=$!
t0=$(date +%s)
rss5="" recoveries=() next_sample=0
: >"$WORK/rss_series"
next_kill=$KILL_EVERY
while kill -0 "$SIM" 2>/dev/null; do
  sleep 5
  el=$(($(date +%s) - t0))
  if [[ -z "$rss5" && $el -ge 300 ]]; then rss5=$(rss "${PID[b]}"); fi
  # B's RSS and devices held, every minute: tells state growth (devices, their windows filling)
  # from allocator retention after partition moves.
  if ((el >= next_sample)); then
    # With the allocator's figures: live allocations vs pages it holds.
    read -r devices allocated resident < <(curl -s "127.0.0.1:${PORT[b]}/metrics" | awk '
      /^aepiot_state_devices\{/ {s += $2} /^aepiot_allocator_allocated_bytes / {a = $2}
      /^aepiot_allocator_resident_bytes / {r = $2} END {print s + 0, a + 0, r + 0}')
    echo "$el $(rss "${PID[b]}") ${devices:-0} ${allocated:-0} ${resident:-0}" >>"$WORK/rss_series"
    next_sample=$((next_sample + 60))
  fi
  if ((el >= next_kill && el < DURATION - 60)); then
    kill -9 "${PID[a]}"; wait "${PID[a]}" 2>/dev/null || true
    killed=$(date +%s)
    sleep "$RESTART_AFTER"
    start a
    echo "soak: killed A at ${el}s, restarted it ${RESTART_AFTER}s later" >&2
    # Lag is "under a second of events" once below RATE records.
    # Recovered once every partition is reported by a live owner again and the lag is under a
    # second of events: right after the kill, the killed member's partitions are nobody's, and
    # their committed lag is still small (it grows while nobody reads them).
    while :; do
      read -r l unreported < <(lag)
      if [[ "$l" =~ ^[0-9]+$ && "$unreported" == 0 ]] && ((l < RATE)); then
        recoveries+=("$(($(date +%s) - killed))")
        break
      fi
      if (($(date +%s) - killed > 300)); then recoveries+=("-1"); break; fi
      sleep 1
    done
    echo "soak: lag under ${RATE} after ${recoveries[-1]}s" >&2
    next_kill=$((next_kill + KILL_EVERY))
  fi
done
wait "$SIM" || true
# Let both drain: wait for the group's committed offsets to reach the end (or 5 minutes).
for _ in $(seq 300); do [[ "$(committed_lag)" == 0 ]] && break; sleep 1; done
final_lag=$(committed_lag)
rss_end=$(rss "${PID[b]}")
kill -TERM "${PID[a]}" "${PID[b]}"; wait "${PID[a]}" "${PID[b]}" 2>/dev/null || true

# Lost successes: the input, partition by partition in offset order, through `process`.
: >"$WORK/input.jsonl"; : >"$WORK/sizes"
for p in $(seq 0 11); do
  kcat -C -b "$BROKERS" -t "$IN" -p "$p" -o beginning -e -q -f '%s\n' >"$WORK/in-$p.jsonl"
  echo "$p $(wc -l <"$WORK/in-$p.jsonl")" >>"$WORK/sizes"
  cat "$WORK/in-$p.jsonl" >>"$WORK/input.jsonl"; rm "$WORK/in-$p.jsonl"
done
"$BIN" process --emit-suppressed --input "$WORK/input.jsonl" --output "$WORK/judged.jsonl" \
  --dead-letter "$WORK/judged-dead.jsonl" 2>/dev/null
rm "$WORK/input.jsonl"
kcat -C -b "$BROKERS" -t "$OUT" -o beginning -e -q -f '%s\n' >"$WORK/output.jsonl"
python3 "$ROOT/benches/soak_check.py" --work "$WORK" --rss5 "$rss5" --rss-end "$rss_end" \
  --final-lag "$final_lag" --recoveries "${recoveries[*]:-}" --duration "$DURATION" \
  --rate "$RATE" --devices "$DEVICES" --kill-every "$KILL_EVERY" --static "$STATIC" --restart-after "$RESTART_AFTER" |
  tee "$WORK/soak.json"
