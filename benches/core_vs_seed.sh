#!/usr/bin/env bash
# Core engine vs the seed's Python, in the same sitting, on identical workloads.
#
#   benches/core_vs_seed.sh            # 3 runs of each workload, interleaved Python/Rust
#   RUNS=1 benches/core_vs_seed.sh     # quicker
#
# For each (N, DEVICES) it runs
#   python3 ../shared/reference/seed_bench.py N DEVICES            (the seed, timed)
#   target/release/examples/core_bench N DEVICES                   (Engine::process, timed)
# which print the same JSON line (events, devices, seconds, events_per_s, us_per_event, statuses).
# Before timing, it checks that both sides generate byte-identical payloads (sha256 of the
# newline-joined lines); after, that their status counts are equal (exit 1 if not), and it prints
# the medians as a Markdown table. Raw result lines go to target/core_vs_seed/results.jsonl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SEED_BENCH="${SEED_BENCH:-$ROOT/../shared/reference/seed_bench.py}"
RUNS="${RUNS:-3}"
# N:DEVICES. The 1M-device run takes ~50-60 s of Python per run on the reference machine.
WORKLOADS="${WORKLOADS:-200000:10000 1000000:1000000}"
OUT="$ROOT/target/core_vs_seed"
RESULTS="$OUT/results.jsonl"
mkdir -p "$OUT"
: >"$RESULTS"

[ -f "$SEED_BENCH" ] || { echo "seed_bench.py not found at $SEED_BENCH (set SEED_BENCH)" >&2; exit 2; }
echo "== building the Rust twin (cargo build --release --example core_bench)" >&2
cargo build --release --example core_bench >&2
RUST="$ROOT/target/release/examples/core_bench"

echo "== checking that both sides generate the same payload bytes" >&2
for w in $WORKLOADS; do
  n="${w%%:*}"; d="${w##*:}"
  # The seed's own events() generator (benches/support/seed_events.py), one line per event; the
  # twin's --dump has no newline after its last line.
  py_sha=$(python3 "$ROOT/benches/support/seed_events.py" "$SEED_BENCH" "$n" "$d" | sha256sum | cut -d' ' -f1)
  rs_sha=$({ "$RUST" "$n" "$d" --dump; echo; } | sha256sum | cut -d' ' -f1)
  if [ "$py_sha" != "$rs_sha" ]; then
    echo "payloads differ for N=$n DEVICES=$d: python $py_sha, rust $rs_sha" >&2
    exit 1
  fi
  echo "   N=$n DEVICES=$d: identical (sha256 $py_sha)" >&2
done

for run in $(seq 1 "$RUNS"); do
  for w in $WORKLOADS; do
    n="${w%%:*}"; d="${w##*:}"
    echo "== run $run/$RUNS  N=$n DEVICES=$d" >&2
    py=$(python3 "$SEED_BENCH" "$n" "$d")
    echo "   python: $py" >&2
    rs=$("$RUST" "$n" "$d")
    echo "   rust:   $rs" >&2
    printf '{"run": %s, "side": "python", "result": %s}\n' "$run" "$py" >>"$RESULTS"
    printf '{"run": %s, "side": "rust", "result": %s}\n' "$run" "$rs" >>"$RESULTS"
  done
done

# Semantics cross-check (not timed): without the payload's constant `timestamp`, the engine judges
# event i at the record time t0 + i ms, exactly the seed's `now`. Its statuses must match too.
for w in $WORKLOADS; do
  n="${w%%:*}"; d="${w##*:}"
  rs=$("$RUST" "$n" "$d" --no-timestamp)
  echo "== cross-check N=$n DEVICES=$d --no-timestamp: $rs" >&2
  printf '{"run": 0, "side": "rust_no_timestamp", "result": %s}\n' "$rs" >>"$RESULTS"
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ok = True
print()
print('| Workload | Rust µs/event (median) | Python µs/event (median) | Speed-up | Rust runs | Python runs | Statuses |')
print('|---|---|---|---|---|---|---|')
keys = []
for r in rows:
    k = (r['result']['events'], r['result']['devices'])
    if k not in keys:
        keys.append(k)
for k in keys:
    side = {s: [r['result'] for r in rows if r['side'] == s and (r['result']['events'], r['result']['devices']) == k]
            for s in ('rust', 'python')}
    med = {s: statistics.median(x['us_per_event'] for x in v) for s, v in side.items()}
    statuses = {s: {json.dumps(x['statuses'], sort_keys=True) for x in v} for s, v in side.items()}
    cross = {json.dumps(r['result']['statuses'], sort_keys=True) for r in rows
             if r['side'] == 'rust_no_timestamp' and (r['result']['events'], r['result']['devices']) == k}
    same = len(statuses['rust'] | statuses['python'] | cross) == 1
    ok &= same
    runs = {s: ', '.join(str(x['us_per_event']) for x in v) for s, v in side.items()}
    print(f"| {k[0]:,} events / {k[1]:,} devices | {med['rust']:.2f} | {med['python']:.2f} | "
          f"{med['python'] / med['rust']:.1f}× | {runs['rust']} | {runs['python']} | "
          f"{'match: ' + next(iter(statuses['rust'])) if same else 'MISMATCH: ' + str(statuses)} |")
if not ok:
    print('\nstatus counts differ between Python and Rust', file=sys.stderr)
    sys.exit(1)
EOF
