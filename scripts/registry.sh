#!/usr/bin/env bash
# scripts/registry.sh — a real Schema Registry for developers and CI, without Docker: Apicurio
# Registry 2.6.13.Final (in-memory storage, or an H2 file with REGISTRY_STORAGE=file), whose Confluent-compatible API at
# /apis/ccompat/v7 serves AVRO, PROTOBUF and JSON schemas to Confluent's serializers and to
# aepiot-stream's [schema_registry] client. (The 3.x releases need Java 21; 2.6 runs on Java 17.)
#
# The registry is one Quarkus application, on Maven Central as
# io.apicurio:apicurio-registry-app:<version>, classifier `all`, type `tar.gz` (~142 MB). Maven
# fetches it once into a cache directory, where it is unpacked; later starts never call Maven.
#
# Usage: scripts/registry.sh COMMAND
#
#   start      fetch (first time), start the registry, return once its Confluent API answers.
#              No-op (exit 0) when it is already running.
#   stop       SIGTERM, wait up to $REGISTRY_STOP_TIMEOUT s, then SIGKILL. In-memory storage:
#              every schema is gone after a stop (a new start numbers schemas from 1 again);
#              with REGISTRY_STORAGE=file they are kept in the data dir for the next start.
#   restart    stop + start.
#   pause      SIGSTOP: the registry keeps its schemas but answers nothing (requests time out),
#              as an unreachable registry does; `resume` (SIGCONT) brings it back as it was.
#   resume     SIGCONT.
#   status     print running/paused/stopped; exit 0 only when running and answering.
#   url        print the Confluent-compatible base URL, e.g. http://127.0.0.1:19781/apis/ccompat/v7
#   logs [N]   last N (200) lines of the registry's log.
#   fetch      only populate the cache (e.g. a CI warm-up step); prints the cache directory.
#   info       print version, port, paths.
#
# Environment (all optional):
#   REGISTRY_PORT=19781          HTTP port
#   REGISTRY_HOST=127.0.0.1      address it binds to
#   REGISTRY_CACHE_DIR=~/.cache/aepiot-stream/apicurio-registry-<version>   the unpacked app
#   REGISTRY_DATA_DIR=/tmp/aepiot-registry-<port>   registry.log, registry.pid, the lock
#   REGISTRY_STORAGE=mem         `mem`: schemas live as long as the process (the app's default,
#                                H2 in memory); `file`: an H2 database in $REGISTRY_DATA_DIR/db,
#                                kept across stop and start, as a production registry keeps its
#                                schemas (tests/schema_registry.rs stops and starts one so)
#   REGISTRY_HEAP_OPTS="-Xms64m -Xmx384m"   heap (in-memory storage of a few test schemas)
#   REGISTRY_JVM_OPTS=""         extra JVM flags (e.g. -Dapicurio.ccompat.legacy-id-mode.enabled=true)
#   REGISTRY_START_TIMEOUT=120   seconds `start` waits for the API
#   REGISTRY_STOP_TIMEOUT=20     seconds `stop` waits before SIGKILL
#   JAVA_HOME                    Java 17+ (else `java` on PATH)
set -euo pipefail

REGISTRY_VERSION="2.6.13.Final"
ARTIFACT="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all"
RUNNER="apicurio-registry-app-$REGISTRY_VERSION-runner.jar"
CCOMPAT_PATH="/apis/ccompat/v7"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "registry.sh: error: $*" >&2; exit 1; }
log() { echo "registry.sh: $*" >&2; }

# 19781: next to the project's other fixed ports (19192-19722), used by none of them.
PORT="${REGISTRY_PORT:-19781}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "bad port: $PORT"
HOST="${REGISTRY_HOST:-127.0.0.1}"
CACHE_DIR="${REGISTRY_CACHE_DIR:-${HOME:?HOME is not set}/.cache/aepiot-stream/apicurio-registry-$REGISTRY_VERSION}"
DATA_DIR="${REGISTRY_DATA_DIR:-/tmp/aepiot-registry-$PORT}"
HEAP_OPTS="${REGISTRY_HEAP_OPTS:--Xms64m -Xmx384m}"
START_TIMEOUT="${REGISTRY_START_TIMEOUT:-120}"
STOP_TIMEOUT="${REGISTRY_STOP_TIMEOUT:-20}"
STORAGE="${REGISTRY_STORAGE:-mem}"

APP_DIR="$CACHE_DIR/app"
STAMP_FILE="$CACHE_DIR/.complete"
LOG_FILE="$DATA_DIR/registry.log"
PID_FILE="$DATA_DIR/registry.pid"
BASE_URL="http://$HOST:$PORT"

# ---------------------------------------------------------------- cache
cache_ok() { [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$ARTIFACT" && -f "$APP_DIR/$RUNNER" ]]; }

ensure_cache() { ensure_filled cache_ok fill_cache "Apicurio Registry $REGISTRY_VERSION (~142 MB)"; }

fill_cache() {
  local tmp="$CACHE_DIR/fetch.tmp.$$" tgz
  rm -rf "$tmp"
  mvn_fetch "$CACHE_DIR/mvn.log" "$tmp" "$ARTIFACT" dependency:copy -Dartifact="$ARTIFACT" \
    -DoutputDirectory="$tmp/download"
  tgz="$(find "$tmp/download" -maxdepth 1 -name '*.tar.gz' | head -n1)"
  [[ -n "$tgz" ]] || die "Maven ran but no tar.gz is in $tmp/download"
  mkdir -p "$tmp/app"
  tar -xzf "$tgz" -C "$tmp/app" || die "cannot unpack $tgz"
  [[ -f "$tmp/app/$RUNNER" ]] || die "$tgz holds no $RUNNER"
  rm -rf "$APP_DIR"
  mv "$tmp/app" "$APP_DIR"
  rm -rf "$tmp"
  echo "$ARTIFACT" >"$STAMP_FILE"
  log "cached Apicurio Registry $REGISTRY_VERSION ($(du -sh "$APP_DIR" | cut -f1))"
}

# ---------------------------------------------------------------- process helpers
# check_java, port_open, proc_dead, live_pid, wait_gone, with_lock, log_tail, detach, stop_pid
LOCK_NAME=.registry-sh.lock
# shellcheck source=lib/daemon.sh
source "$SCRIPT_DIR/lib/daemon.sh"

# The Confluent API answers a real request (the subject list), not just the port.
api_ready() {
  command -v curl >/dev/null || die "curl not found (scripts/install-ci-deps.sh installs it)"
  [[ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$BASE_URL$CCOMPAT_PATH/subjects" 2>/dev/null)" == 200 ]]
}

# pid of the registry of this data dir, or nothing.
registry_pid() { live_pid "$PID_FILE" "-Dquarkus.http.port=$PORT "; }

paused() { [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == "T" ]]; }

wait_ready() { # PID
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  until api_ready; do
    if proc_dead "$pid"; then
      rm -f "$PID_FILE"
      log_tail
      die "the registry (pid $pid) exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
      log_tail
      kill -KILL "$pid" 2>/dev/null || true   # leave nothing half-started behind
      wait_gone "$pid" 10 || true
      rm -f "$PID_FILE"
      die "the registry (pid $pid) did not answer $BASE_URL$CCOMPAT_PATH within ${START_TIMEOUT}s; stopped it"
    fi
    sleep 0.3
  done
}

# ---------------------------------------------------------------- commands
cmd_start() {
  with_lock
  local pid
  if pid="$(registry_pid)"; then
    if paused "$pid"; then die "the registry (pid $pid) is paused: \`registry.sh resume\`"; fi
    log "already running (pid $pid); waiting for $BASE_URL$CCOMPAT_PATH"
    wait_ready "$pid"
    return 0
  fi
  rm -f "$PID_FILE"
  if port_open "$PORT"; then die "port $PORT on $HOST is in use by another process (not a registry of $DATA_DIR)"; fi
  check_java "Apicurio Registry $REGISTRY_VERSION"
  ensure_cache
  mkdir -p "$DATA_DIR"
  touch "$LOG_FILE"
  echo "===== registry.sh start $(date -u +%FT%TZ): Apicurio Registry $REGISTRY_VERSION on $HOST:$PORT =====" >>"$LOG_FILE"
  # The app reads its datasource from REGISTRY_DATASOURCE_URL (its application.properties):
  # unset, H2 in memory.
  local datasource=()
  case "$STORAGE" in
    mem) ;;
    file) mkdir -p "$DATA_DIR/db"; datasource=("REGISTRY_DATASOURCE_URL=jdbc:h2:file:$DATA_DIR/db/registry") ;;
    *) die "REGISTRY_STORAGE must be mem or file, not '$STORAGE'" ;;
  esac
  # The working directory is the data dir, where Quarkus may write; the app stays read-only.
  # Serial GC and C1 only: a small service on a shared 2-core machine starts faster so.
  # shellcheck disable=SC2086
  (cd "$DATA_DIR" && { ((${#datasource[@]} == 0)) || export "${datasource[@]}"; } && detach "$PID_FILE" \
    "$JAVA" $HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true ${REGISTRY_JVM_OPTS:-} \
    "-Dquarkus.http.host=$HOST" "-Dquarkus.http.port=$PORT" \
    -jar "$APP_DIR/$RUNNER")
  pid="$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || die "the registry did not start (no pid in $PID_FILE)"
  log "started registry pid $pid, waiting up to ${START_TIMEOUT}s for $BASE_URL$CCOMPAT_PATH (log: $LOG_FILE)"
  wait_ready "$pid"
  log "Apicurio Registry $REGISTRY_VERSION ready: $BASE_URL$CCOMPAT_PATH (pid $pid)"
}

cmd_stop() {
  with_lock
  local pid
  if ! pid="$(registry_pid)"; then
    rm -f "$PID_FILE"
    log "not running ($DATA_DIR)"
    return 0
  fi
  kill -CONT "$pid" 2>/dev/null || true   # a paused JVM cannot act on SIGTERM
  stop_pid "$pid" registry
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_signal() { # STOP|CONT
  local pid
  pid="$(registry_pid)" || die "not running ($DATA_DIR)"
  kill "-$1" "$pid"
  if [[ "$1" == STOP ]]; then log "paused registry pid $pid"; else log "resumed registry pid $pid"; fi
}

cmd_status() {
  local pid
  if pid="$(registry_pid)"; then
    if paused "$pid"; then
      echo "paused (pid $pid, $BASE_URL$CCOMPAT_PATH)"
      return 1
    fi
    if api_ready; then
      echo "running (pid $pid, $BASE_URL$CCOMPAT_PATH)"
      return 0
    fi
    echo "starting (pid $pid, $BASE_URL$CCOMPAT_PATH not answering)"
    return 1
  fi
  echo "stopped ($DATA_DIR)"
  return 1
}

cmd_info() {
  cat <<EOF
registry_version=$REGISTRY_VERSION
url=$BASE_URL$CCOMPAT_PATH
cache_dir=$CACHE_DIR
data_dir=$DATA_DIR
log_file=$LOG_FILE
pid_file=$PID_FILE
EOF
}

case "${1:-}" in
  url) echo "$BASE_URL$CCOMPAT_PATH" ;;
  start) cmd_start ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  pause) cmd_signal STOP ;;
  resume) cmd_signal CONT ;;
  logs) [[ -f "$LOG_FILE" ]] || die "no log at $LOG_FILE"; tail -n "${2:-200}" "$LOG_FILE" ;;
  fetch) ensure_cache; echo "$CACHE_DIR" ;;
  info) cmd_info ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) usage >&2; die "unknown command: $1" ;;
esac
