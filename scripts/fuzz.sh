#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] — run each cargo-fuzz target (fuzz/) for SECONDS (default 300),
# one after another, and print libFuzzer's final statistics (executions, exec/s) per target.
#
#   parse_event  arbitrary bytes -> core::event::parse_event; accepted events -> UrlBuilder;
#                every URL has exactly title, description, link, decoding to the event's texts
#   engine       arbitrary bytes (records split at \n, an empty one is a tombstone) -> Engine
#                with emit_suppressed and small limits; never panics, outputs are valid JSON
#
# Environment:
#   FUZZ_TARGETS="parse_event engine"   targets to run
#   FUZZ_RUNS=N                         also stop each target after N executions
#   FUZZ_ARGS="..."                     extra libFuzzer flags (e.g. -jobs=2 -workers=2)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz, installed from
# crates.io here when missing. The corpus grows in fuzz/corpus/<target> (seeded from
# fuzz/seeds/<target>); a crash leaves its input in fuzz/artifacts/<target>/ and this script exits
# non-zero: turn that input into a regression test (tests/fuzz_regressions.rs) and fix the bug.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-300}"
[[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2; }
TARGETS=(${FUZZ_TARGETS:-parse_event engine})

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
  cargo install cargo-fuzz --locked
fi

# cc-rs instruments C code for AddressSanitizer whenever rustc does (-Zsanitizer=address, as
# cargo fuzz builds): zstd-sys' libzstd.a would then need the ASan runtime, which librdkafka's own
# configure step (mklove, not cc-rs) does not link, and rdkafka-sys fails to build. The C libraries
# are not what is fuzzed: keep them uninstrumented; the Rust code keeps ASan.
export CFLAGS="${CFLAGS:-} -fno-sanitize=address"
export CXXFLAGS="${CXXFLAGS:-} -fno-sanitize=address"

max_len() {
  case "$1" in
    parse_event) echo 16384 ;;  # up to ~8k levels of nesting
    engine) echo 8192 ;;        # records over the target's 2 KiB limit, several per input
    *) echo 4096 ;;
  esac
}

cargo +nightly fuzz build

status=0
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  limit=(-max_total_time="$SECONDS_PER_TARGET")
  what="$SECONDS_PER_TARGET s"
  if [[ -n "${FUZZ_RUNS:-}" ]]; then
    limit+=(-runs="$FUZZ_RUNS")
    what="$FUZZ_RUNS runs or $SECONDS_PER_TARGET s, whichever comes first"
  fi
  echo "fuzz.sh: $t ($what), log $log" >&2
  # shellcheck disable=SC2086
  if cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      "${limit[@]}" -max_len="$(max_len "$t")" -dict=fuzz/json.dict \
      -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 ${FUZZ_ARGS:-} >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (exit $?; crash input in fuzz/artifacts/$t/)"
    status=1
    tail -n 40 "$log" >&2
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
  summary+=("$t: $result, ${execs:-?} executions, ${rate:-?} exec/s, corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs")
done
printf 'fuzz.sh: %s\n' "${summary[@]}"
exit "$status"
