#!/usr/bin/env bash
# scripts/jaeger.sh — a real Jaeger v2 (all-in-one: the OpenTelemetry Collector with Jaeger's
# in-memory storage and query API) for the tracing tests and benchmarks, without Docker.
#
# Jaeger is a Go program on the Go module proxy, pinned by tools/jaeger/go.mod (`go get -tool
# github.com/jaegertracing/jaeger/cmd/jaeger@VERSION`); it is built once with the Go toolchain
# into a cache directory (about 10 minutes on 2 cores; later starts never build). It runs with
# tools/jaeger/config.yaml: OTLP receivers and the query API only, every port bound to 127.0.0.1.
#
# Usage: scripts/jaeger.sh COMMAND
#   build     only build the binary into the cache (a CI warm-up step); prints its path
#   start     build (first time), start, return once the query API answers. No-op when running.
#   stop      SIGTERM, then SIGKILL after 10 s.
#   status    print running/stopped; exit 0 when running, else 1.
#   env       the variables the tests read, as `export` lines (eval "$(scripts/jaeger.sh env)")
#   logs [N]  the last N (100) lines of its log.
#
# Environment (all optional):
#   JAEGER_OTLP_HTTP_PORT=21118   OTLP/HTTP receiver (what aepiot-stream exports to)
#   JAEGER_OTLP_GRPC_PORT=21117   OTLP/gRPC receiver
#   JAEGER_QUERY_PORT=21116       query API and UI (HTTP): GET /api/traces/{trace_id}
#   JAEGER_QUERY_GRPC_PORT=21115  query API (gRPC)
#   JAEGER_CACHE_DIR=~/.cache/aepiot-stream/jaeger-<version>   where the binary is kept
#   JAEGER_RUN_DIR=/tmp/aepiot-jaeger-<query port>              pid file and log
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODULE="$ROOT/tools/jaeger"
VERSION="$(sed -n 's/^[[:space:]]*github.com\/jaegertracing\/jaeger \(v[^ ]*\).*/\1/p' "$MODULE/go.mod" | head -1)"
export JAEGER_OTLP_HTTP_PORT="${JAEGER_OTLP_HTTP_PORT:-21118}"
export JAEGER_OTLP_GRPC_PORT="${JAEGER_OTLP_GRPC_PORT:-21117}"
export JAEGER_QUERY_PORT="${JAEGER_QUERY_PORT:-21116}"
export JAEGER_QUERY_GRPC_PORT="${JAEGER_QUERY_GRPC_PORT:-21115}"
CACHE_DIR="${JAEGER_CACHE_DIR:-$HOME/.cache/aepiot-stream/jaeger-$VERSION}"
BIN="$CACHE_DIR/jaeger"
STAMP="$CACHE_DIR/go.sum.sha256"
RUN_DIR="${JAEGER_RUN_DIR:-/tmp/aepiot-jaeger-$JAEGER_QUERY_PORT}"
PID_FILE="$RUN_DIR/jaeger.pid"
LOG_FILE="$RUN_DIR/jaeger.log"

die() { echo "jaeger.sh: error: $*" >&2; exit 1; }
log() { echo "jaeger.sh: $*" >&2; }
# live_pid, wait_gone
# shellcheck source=lib/daemon.sh
source "$ROOT/scripts/lib/daemon.sh"

[[ -n "$VERSION" ]] || die "no jaeger version in $MODULE/go.mod"

built() { [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$(sha256sum "$MODULE/go.sum" | cut -d' ' -f1)" ]]; }

cmd_build() {
  mkdir -p "$CACHE_DIR"
  # One build at a time; one that waited finds the binary built.
  local fd
  exec {fd}>"$CACHE_DIR/.lock"
  flock -w 1800 "$fd" || die "timed out waiting for the build lock $CACHE_DIR/.lock"
  if ! built; then
    command -v go >/dev/null || die "Go is needed to build Jaeger (https://go.dev/dl/)"
    log "building jaeger $VERSION with $(go version | awk '{print $3}') into $CACHE_DIR (first time only; ~10 minutes on 2 cores)"
    local start; start=$(date +%s)
    # The module's `tool` directive pins Jaeger and every dependency (go.sum); CGO off: a static
    # binary, no C toolchain involved.
    (cd "$MODULE" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" \
      github.com/jaegertracing/jaeger/cmd/jaeger) >&2
    mv "$BIN.tmp" "$BIN"
    sha256sum "$MODULE/go.sum" | cut -d' ' -f1 >"$STAMP"
    log "built in $(( $(date +%s) - start )) s"
  fi
  exec {fd}>&-
  echo "$BIN"
}

pid() { live_pid "$PID_FILE" "$BIN"; }

query_ready() { curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services"; }

cmd_start() {
  if pid >/dev/null; then
    log "already running (pid $(pid))"
    return 0
  fi
  cmd_build >/dev/null
  mkdir -p "$RUN_DIR"
  : >"$LOG_FILE"
  "$BIN" --config "$MODULE/config.yaml" >>"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  local deadline=$(( $(date +%s) + 60 ))
  until query_ready; do
    if ! pid >/dev/null; then
      tail -n 40 "$LOG_FILE" >&2
      die "jaeger exited during start-up (log: $LOG_FILE)"
    fi
    if (( $(date +%s) > deadline )); then
      tail -n 40 "$LOG_FILE" >&2
      cmd_stop
      die "jaeger's query API did not answer within 60 s (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
  log "running (pid $(pid)): OTLP/HTTP 127.0.0.1:$JAEGER_OTLP_HTTP_PORT, query http://127.0.0.1:$JAEGER_QUERY_PORT"
}

cmd_stop() {
  local p
  p="$(pid)" || { rm -f "$PID_FILE"; log "not running"; return 0; }
  kill "$p"
  if wait_gone "$p" 10; then
    log "stopped"
  else
    kill -9 "$p" 2>/dev/null || true
    wait_gone "$p" 10 || true
    log "killed after 10 s"
  fi
  rm -f "$PID_FILE"
}

cmd_status() {
  if pid >/dev/null && query_ready; then echo running; else echo stopped; return 1; fi
}

cmd_env() {
  echo "export JAEGER_OTLP_ENDPOINT=http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT/v1/traces"
  echo "export JAEGER_QUERY_URL=http://127.0.0.1:$JAEGER_QUERY_PORT"
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  logs) tail -n "${2:-100}" "$LOG_FILE" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
