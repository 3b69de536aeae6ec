#!/usr/bin/env bash
# benches/process_cli.sh — `aepiot-stream process` as users run it, against the seed's Python, in
# the same sitting (issue 16): N events from DEVICES devices, the seed's own workload, through the
# CLI from stdin to a file,
#   aepiot-stream process --emit-suppressed < events.jsonl > out.jsonl
# and `python3 ../shared/reference/seed_bench.py N DEVICES` (which times only its processing loop,
# input already in memory, output serialised and dropped). Interleaved, RUNS times each.
#
# The Rust figure is the whole process: start, reading and parsing every line, the engine, and
# writing ~1.4 KB of JSON per event to the output file (1.4 GB for 1M events). It is reported as
# wall time per event and as CPU (user + system) per event, with the peak RSS.
#
# Usage: benches/process_cli.sh            (N=1000000 DEVICES=100000 RUNS=3)
# Environment: N, DEVICES, RUNS, AEPIOT_BIN (target/release/aepiot-stream, built if missing),
# WORK (/tmp/aepiot-process-cli; the input and output files live there), SEED_BENCH.
# Results: JSON lines in WORK/results.jsonl and a Markdown table on stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
N="${N:-1000000}" DEVICES="${DEVICES:-100000}" RUNS="${RUNS:-3}"
WORK="${WORK:-/tmp/aepiot-process-cli}"
BIN="${AEPIOT_BIN:-$ROOT/target/release/aepiot-stream}"
SEED_BENCH="${SEED_BENCH:-$ROOT/../shared/reference/seed_bench.py}"
[[ -f "$SEED_BENCH" ]] || { echo "seed_bench.py not found at $SEED_BENCH (set SEED_BENCH)" >&2; exit 2; }
[[ -x "$BIN" ]] || (cd "$ROOT" && cargo build --release --locked)
mkdir -p "$WORK"
EVENTS="$WORK/events-$N-$DEVICES.jsonl" RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

# The seed's own events() generator (benches/support/seed_events.py).
if [[ ! -s "$EVENTS" ]]; then
  python3 "$ROOT/benches/support/seed_events.py" "$SEED_BENCH" "$N" "$DEVICES" >"$EVENTS"
fi
echo "== input: $EVENTS ($(wc -l <"$EVENTS") lines); binary: $BIN" >&2

for run in $(seq 1 "$RUNS"); do
  py=$(cd "$(dirname "$SEED_BENCH")" && python3 "$SEED_BENCH" "$N" "$DEVICES")
  echo "   run $run python: $py" >&2
  printf '{"run": %s, "side": "python", "result": %s}\n' "$run" "$py" >>"$RESULTS"
  rm -f "$WORK/out.jsonl"
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.txt" \
    "$BIN" process --emit-suppressed <"$EVENTS" >"$WORK/out.jsonl" 2>"$WORK/stderr.txt"
  read -r wall user sys rss_kb <"$WORK/time.txt"
  lines=$(wc -l <"$WORK/out.jsonl")
  bytes=$(stat -c %s "$WORK/out.jsonl")
  rs=$(python3 -c "
import json, sys
n, wall, user, sys_, rss, lines, bytes_ = $N, $wall, $user, $sys, $rss_kb, $lines, $bytes
print(json.dumps({'events': n, 'output_lines': lines, 'output_bytes': bytes_, 'seconds': wall,
                  'us_per_event': round(wall / n * 1e6, 2), 'cpu_us_per_event': round((user + sys_) / n * 1e6, 2),
                  'user_s': user, 'sys_s': sys_, 'max_rss_mb': round(rss / 1024, 1)}))")
  echo "   run $run rust:   $rs ($(tail -1 "$WORK/stderr.txt"))" >&2
  printf '{"run": %s, "side": "rust", "result": %s}\n' "$run" "$rs" >>"$RESULTS"
  [[ "$lines" == "$N" ]] || { echo "process wrote $lines lines for $N events" >&2; exit 1; }
done
rm -f "$WORK/out.jsonl"

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
side = lambda s: [r['result'] for r in rows if r['side'] == s]
py, rs = side('python'), side('rust')
mp = statistics.median(x['us_per_event'] for x in py)
mr = statistics.median(x['us_per_event'] for x in rs)
mc = statistics.median(x['cpu_us_per_event'] for x in rs)
print('| seed Python µs/event (runs) | `process` wall µs/event (runs) | `process` CPU µs/event (runs) | peak RSS MB | speed-up (medians, wall) |')
print('|---|---|---|---|---|')
print(f"| {mp:.2f} ({', '.join(str(x['us_per_event']) for x in py)}) "
      f"| {mr:.2f} ({', '.join(str(x['us_per_event']) for x in rs)}) "
      f"| {mc:.2f} ({', '.join(str(x['cpu_us_per_event']) for x in rs)}) "
      f"| {max(x['max_rss_mb'] for x in rs)} | **{mp / mr:.1f}×** |")
EOF
