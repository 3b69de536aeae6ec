#!/usr/bin/env bash
# scripts/kafka.sh — a real single-node Apache Kafka 4.x broker (KRaft,
# combined broker+controller) for developers and CI, without Docker.
#
# The broker and its tools are plain jars from Maven Central, resolved by
# Maven from scripts/kafka/pom.xml (the Kafka version is pinned there) and
# copied once into a cache directory; later starts never call Maven.
#
# Usage: scripts/kafka.sh [--port N] [--controller-port N] COMMAND [ARGS]
#
#   start                   fetch (first time), format storage (first time),
#                           start the broker, return once it serves clients.
#                           No-op (exit 0) when it is already running.
#   stop                    SIGTERM, wait up to $KAFKA_STOP_TIMEOUT s, then SIGKILL.
#   restart                 stop + start.
#   status                  print running/stopped; exit 0 when running, else 1.
#   create-topic NAME P [TopicCommand args...]
#                           create topic NAME with P partitions, RF 1
#                           (--if-not-exists, so idempotent).
#   delete-topic NAME       delete a topic (--if-exists).
#   list-topics             list topics.
#   kill9                   kill -9 the broker (fault injection); `start` recovers.
#   logs [-f] [N]           last N (200) lines of the broker log; -f follows.
#   bootstrap               print the bootstrap address, e.g. 127.0.0.1:9092.
#   tool CLASS [ARGS...]    run any Kafka main class on the broker's classpath,
#                           e.g. org.apache.kafka.tools.consumer.ConsoleConsumer.
#   fetch                   only populate the jar cache (e.g. a CI warm-up step).
#   info                    print version, ports, paths.
#   cluster [--nodes N] SUBCOMMAND
#                           a cluster of N (3) combined controller+broker KRaft
#                           nodes on 127.0.0.1, replicated like production:
#                           default.replication.factor=3, min.insync.replicas=2,
#                           offsets and transaction state topics RF 3 (min ISR 2).
#     start [--fresh]       start every node (in parallel: the controllers need a
#                           quorum), return once all serve clients; --fresh wipes
#                           the cluster's data first. A failed start stops the
#                           nodes it started.
#     stop                  stop every node (controlled shutdown, SIGKILL after
#                           $KAFKA_STOP_TIMEOUT s).
#     status                one line per node; exit 0 when all run.
#     kill N | stop-node N | start-node N
#                           SIGKILL / controlled shutdown / start of node N (1..N).
#     bootstrap             the bootstrap list, e.g. 127.0.0.1:20101,127.0.0.1:20102,...
#     port N                node N's broker port.
#     create-topic NAME P [TopicCommand args...]
#                           create a topic with the cluster's default RF (3).
#     delete-topic NAME     delete a topic (--if-exists).
#     tool CLASS [ARGS...]  as `tool`, e.g. with --bootstrap-server "$(kafka.sh cluster bootstrap)".
#     leader TOPIC P        node id (= node number) leading partition P of TOPIC.
#     coordinator group G | coordinator transaction ID
#                           node id of the group / transaction coordinator.
#     logs N [-f] [LINES]   node N's broker log.
#     wipe                  stop, then delete the cluster's data.
#     info                  ports, data directories.
#
# Cluster environment (all optional):
#   KAFKA_CLUSTER_BASE_PORT=20100   node N listens on BASE+N (clients) and BASE+10+N
#                                (controller): 20101-20103 and 20111-20113 for 3 nodes
#   KAFKA_CLUSTER_DIR=/tmp/aepiot-kafka-cluster-<base>   node N's data in node-N/
#   KAFKA_CLUSTER_HEAP_OPTS="-Xms256m -Xmx512m"   each node's heap
#   KAFKA_EXTRA_PROPS, KAFKA_START_TIMEOUT, KAFKA_STOP_TIMEOUT apply to every node.
#
# Environment (all optional):
#   KAFKA_PORT=9092              PLAINTEXT listener port (also --port N)
#   KAFKA_CONTROLLER_PORT=PORT+1 KRaft controller listener (also --controller-port N)
#   KAFKA_HOST=127.0.0.1         address both listeners bind to and advertise
#   KAFKA_CACHE_DIR=~/.cache/aepiot-stream/kafka-<version>   jars + classpath file
#   KAFKA_DATA_DIR=/tmp/aepiot-kafka-<port>   server.properties, kafka.log,
#                                kafka.pid, data/ (log.dirs, KRaft metadata)
#   KAFKA_HEAP_OPTS="-Xms256m -Xmx1g"   broker heap
#   KAFKA_JVM_OPTS=""            extra broker JVM flags
#   KAFKA_EXTRA_PROPS=""         extra server.properties lines appended last
#                                (later keys win), separated by newlines, or by
#                                commas that start a new key=value
#                                ("a=1,b=x,y,c=2" -> a=1 / b=x,y / c=2).
#                                Newlines are the safe choice.
#   KAFKA_CLUSTER_ID=<random>    cluster id used when formatting fresh storage
#   KAFKA_START_TIMEOUT=90       seconds `start` waits for the broker
#   KAFKA_STOP_TIMEOUT=30        seconds `stop` waits before SIGKILL
#   JAVA_HOME                    Java 17+ (else `java` on PATH)
#
# Changing KAFKA_EXTRA_PROPS takes effect on the next start: server.properties
# is rewritten on every start, storage is formatted only once per data dir
# (delete the data dir for a fresh cluster).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_DIR="$SCRIPT_DIR/kafka"
POM="$KAFKA_DIR/pom.xml"

die() { echo "kafka.sh: error: $*" >&2; exit 1; }
log() { echo "kafka.sh: $*" >&2; }

# ---------------------------------------------------------------- arguments
ARGS=()
while (($#)); do
  case "$1" in
    --port) [[ $# -ge 2 ]] || die "--port needs a value"; KAFKA_PORT="$2"; shift 2 ;;
    --port=*) KAFKA_PORT="${1#--port=}"; shift ;;
    --controller-port) [[ $# -ge 2 ]] || die "--controller-port needs a value"; KAFKA_CONTROLLER_PORT="$2"; shift 2 ;;
    --controller-port=*) KAFKA_CONTROLLER_PORT="${1#--controller-port=}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
set -- "${ARGS[@]+"${ARGS[@]}"}"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
[[ -n "$KAFKA_VERSION" ]] || die "cannot read <kafka.version> from $POM"

PORT="${KAFKA_PORT:-9092}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "bad port: $PORT"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
[[ "$CONTROLLER_PORT" =~ ^[0-9]+$ ]] || die "bad controller port: $CONTROLLER_PORT"
[[ "$CONTROLLER_PORT" != "$PORT" ]] || die "controller port must differ from port $PORT"
HOST="${KAFKA_HOST:-127.0.0.1}"
CACHE_DIR="${KAFKA_CACHE_DIR:-${HOME:?HOME is not set}/.cache/aepiot-stream/kafka-$KAFKA_VERSION}"
DATA_DIR="${KAFKA_DATA_DIR:-/tmp/aepiot-kafka-$PORT}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
# set by `cluster` for each node it runs; a single broker is node 1 of a quorum of one
NODE_ID="${KAFKA_NODE_ID:-1}"
QUORUM_VOTERS="${KAFKA_QUORUM_VOTERS:-1@$HOST:$CONTROLLER_PORT}"
REPLICATION_FACTOR="${KAFKA_REPLICATION_FACTOR:-1}"
MIN_ISR="${KAFKA_MIN_ISR:-1}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

LIB_DIR="$CACHE_DIR/libs"
CP_FILE="$CACHE_DIR/classpath"
STAMP_FILE="$CACHE_DIR/.complete"
PROPS="$DATA_DIR/server.properties"
LOG_DIRS="$DATA_DIR/data"
LOG_FILE="$DATA_DIR/kafka.log"
PID_FILE="$DATA_DIR/kafka.pid"

# short-lived CLI tools: small heap, C1 only, serial GC -> fastest start-up
TOOL_JVM_OPTS=(-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto
  -Djava.awt.headless=true "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2-tools.properties")

# ---------------------------------------------------------------- jar cache
pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

cache_ok() { [[ -f "$STAMP_FILE" && -f "$CP_FILE" && "$(cat "$STAMP_FILE")" == "$(pom_hash)" ]]; }

ensure_cache() { ensure_filled cache_ok fill_cache "Kafka $KAFKA_VERSION and its runtime dependencies"; }

fill_cache() {
  local tmp="$CACHE_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  mvn_fetch "$CACHE_DIR/mvn.log" "$tmp" "Kafka $KAFKA_VERSION" -f "$POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp"
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "Maven ran but kafka_2.13-$KAFKA_VERSION.jar is missing in $tmp"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  # the classpath is built once; every java start reads it from this file
  find "$LIB_DIR" -maxdepth 1 -name '*.jar' | LC_ALL=C sort | paste -sd: - >"$CP_FILE.tmp"
  mv "$CP_FILE.tmp" "$CP_FILE"
  pom_hash >"$STAMP_FILE"
  log "cached $(find "$LIB_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1))"
}

classpath() { cat "$CP_FILE"; }

run_tool() { # CLASS ARGS...
  ensure_cache
  local cls="$1"; shift
  "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$(classpath)" "$cls" "$@"
}

# ---------------------------------------------------------------- process helpers
# check_java, port_open, proc_dead, live_pid, wait_gone, with_lock, log_tail, detach, stop_pid
LOCK_NAME=.kafka-sh.lock
# shellcheck source=lib/daemon.sh
source "$SCRIPT_DIR/lib/daemon.sh"

# pid of the broker of this data dir, or nothing.
broker_pid() { live_pid "$PID_FILE" "kafka.Kafka $PROPS "; }

# ---------------------------------------------------------------- config + storage
extra_props() {
  local raw="${KAFKA_EXTRA_PROPS:-}"
  [[ -n "$raw" ]] || return 0
  # a comma starts a new line only where a `key=` follows it
  printf '%s\n' "$raw" | sed -E 's/,[[:space:]]*([A-Za-z0-9_.-]+=)/\n\1/g' | sed -E 's/^[[:space:]]+//; /^$/d'
}

write_config() {
  cat >"$PROPS.tmp" <<EOF
# Generated by scripts/kafka.sh on every start — edits are overwritten.
# Use KAFKA_EXTRA_PROPS for extra settings.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$QUORUM_VOTERS
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$LOG_DIRS

# a single node: every topic has one replica; a cluster (kafka.sh cluster): 3, 2 in sync
offsets.topic.replication.factor=$REPLICATION_FACTOR
transaction.state.log.replication.factor=$REPLICATION_FACTOR
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$REPLICATION_FACTOR
share.coordinator.state.topic.min.isr=$MIN_ISR
default.replication.factor=$REPLICATION_FACTOR
min.insync.replicas=$MIN_ISR

group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1

EOF
  if [[ "$QUORUM_VOTERS" != *,* ]]; then
    cat >>"$PROPS.tmp" <<EOF

# A single node that is its own controller: on a loaded 2-core machine (cargo builds writing
# beside it) controller events that append to the metadata log took 5-13 s, past the default 9 s
# broker session, and the node fenced itself: every client saw AllBrokersDown, and producers hit
# message timeouts. 30 s rides such stalls out. A cluster keeps Kafka's default (9 s), so that a
# killed node's partitions move within seconds, as in production.
broker.session.timeout.ms=30000
EOF
  fi
  local extra
  extra="$(extra_props)"
  if [[ -n "$extra" ]]; then
    printf '\n# KAFKA_EXTRA_PROPS\n%s\n' "$extra" >>"$PROPS.tmp"
  fi
  mv "$PROPS.tmp" "$PROPS"
}

new_cluster_id() { # 16 random bytes, base64url, no padding; like Uuid.randomUuid(): no leading '-'
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && "$id" != "AAAAAAAAAAAAAAAAAAAAAA" && "$id" != "AAAAAAAAAAAAAAAAAAAAAQ" ]] && break
  done
  echo "$id"
}

ensure_storage() {
  if [[ -f "$LOG_DIRS/meta.properties" ]]; then
    return 0   # formatted before: reuse cluster id, topics and offsets
  fi
  rm -rf "$LOG_DIRS"   # half-made (no meta.properties): start clean
  local id="${KAFKA_CLUSTER_ID:-$(new_cluster_id)}"
  log "formatting KRaft storage in $LOG_DIRS (cluster id $id)"
  local out
  if ! out="$("$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$(classpath)" kafka.tools.StorageTool \
        format --cluster-id "$id" --config "$PROPS" 2>&1)"; then
    echo "$out" >&2
    die "kafka-storage format failed"
  fi
}

# ---------------------------------------------------------------- commands
# A real client round trip: a Metadata request with kcat when it is installed
# (milliseconds), else the Java admin client listing topics (~2 s of JVM).
api_ready() {
  if command -v kcat >/dev/null; then
    timeout 20 kcat -b "$HOST:$PORT" -L -m 10 >/dev/null 2>&1
  else
    timeout 30 "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$(classpath)" org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "$HOST:$PORT" --list >/dev/null 2>&1
  fi
}

wait_ready() { # PID LOG_OFFSET [kill-on-timeout]
  local pid="$1" offset="$2" kill_on_timeout="${3:-}" deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if proc_dead "$pid"; then
      rm -f "$PID_FILE"
      log_tail
      die "broker (pid $pid) exited during start-up"
    fi
    # grep -c, not grep -q: -q would quit early, SIGPIPE tail and fail the pipe under pipefail
    if port_open "$PORT" && [[ "$(tail -c "+$((offset + 1))" "$LOG_FILE" | grep -c 'Kafka Server started')" -gt 0 ]]; then
      if api_ready; then
        return 0
      fi
    fi
    if ((SECONDS >= deadline)); then
      log_tail
      if [[ -n "$kill_on_timeout" ]]; then   # leave nothing half-started behind
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 10 || true; }
        rm -f "$PID_FILE"
        log "stopped the half-started broker (pid $pid)"
      fi
      die "broker (pid $pid) did not accept clients on $HOST:$PORT within ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done
}

cmd_start() {
  with_lock
  local pid
  if pid="$(broker_pid)"; then
    if port_open "$PORT"; then
      log "already running (pid $pid) on $HOST:$PORT"
      return 0
    fi
    log "pid $pid is alive but $HOST:$PORT is not accepting yet; waiting"
    ensure_cache
    local marker
    marker="$(grep -abo '===== kafka.sh start' "$LOG_FILE" 2>/dev/null | tail -n1 | cut -d: -f1)"
    wait_ready "$pid" "${marker:-0}"
    log "running (pid $pid) on $HOST:$PORT"
    return 0
  fi
  rm -f "$PID_FILE"
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do port_open "$PORT" || break; sleep 0.3; done
  if port_open "$PORT"; then die "port $PORT on $HOST is in use by another process (not a broker of $DATA_DIR)"; fi
  if port_open "$CONTROLLER_PORT"; then die "controller port $CONTROLLER_PORT on $HOST is in use by another process"; fi
  check_java "Kafka $KAFKA_VERSION"
  ensure_cache
  mkdir -p "$DATA_DIR"
  write_config
  ensure_storage

  touch "$LOG_FILE"
  local offset
  offset="$(stat -c %s "$LOG_FILE")"
  echo "===== kafka.sh start $(date -u +%FT%TZ): Kafka $KAFKA_VERSION on $HOST:$PORT (controller $CONTROLLER_PORT) =====" >>"$LOG_FILE"
  # shellcheck disable=SC2086
  detach "$PID_FILE" \
    "$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2-broker.properties" ${KAFKA_JVM_OPTS:-} \
    -cp "$(classpath)" kafka.Kafka "$PROPS"
  pid="$DETACHED"
  log "started broker pid $pid, waiting up to ${START_TIMEOUT}s for $HOST:$PORT (log: $LOG_FILE)"
  wait_ready "$pid" "$offset" kill-on-timeout
  log "Kafka $KAFKA_VERSION ready on $HOST:$PORT (pid $pid, data $DATA_DIR)"
}

cmd_stop() {
  with_lock
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE"
    log "not running ($DATA_DIR)"
    return 0
  fi
  stop_pid "$pid" broker
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_kill9() {
  with_lock
  local pid
  if ! pid="$(broker_pid)"; then
    log "not running ($DATA_DIR)"
    return 0
  fi
  kill -KILL "$pid"
  wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
  rm -f "$PID_FILE"
  log "killed broker pid $pid with SIGKILL"
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    if port_open "$PORT"; then
      echo "running (pid $pid, bootstrap $HOST:$PORT, data $DATA_DIR)"
      return 0
    fi
    echo "starting (pid $pid, $HOST:$PORT not accepting connections)"
    return 1
  fi
  echo "stopped ($DATA_DIR)"
  return 1
}

cmd_create_topic() {
  [[ $# -ge 2 ]] || die "usage: kafka.sh create-topic NAME PARTITIONS [TopicCommand args...]"
  local name="$1" parts="$2"; shift 2
  [[ "$parts" =~ ^[0-9]+$ ]] || die "PARTITIONS must be a number, got: $parts"
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$PORT" \
    --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 "$@"
}

cmd_logs() {
  local follow=() n=200
  while (($#)); do
    case "$1" in
      -f|--follow) follow=(-F) ;;
      *) n="$1" ;;
    esac
    shift
  done
  [[ -f "$LOG_FILE" ]] || die "no log at $LOG_FILE"
  tail -n "$n" "${follow[@]+"${follow[@]}"}" "$LOG_FILE"
}

cmd_info() {
  cat <<EOF
kafka_version=$KAFKA_VERSION
bootstrap=$HOST:$PORT
controller=$HOST:$CONTROLLER_PORT
cache_dir=$CACHE_DIR
classpath_file=$CP_FILE
data_dir=$DATA_DIR
server_properties=$PROPS
log_file=$LOG_FILE
pid_file=$PID_FILE
EOF
}

# ---------------------------------------------------------------- cluster
# A cluster is N runs of this script, one per node (`node_sh N COMMAND`): each node is a single
# broker of its own data dir and ports whose config names the whole quorum.
CLUSTER_BASE_PORT="${KAFKA_CLUSTER_BASE_PORT:-20100}"
[[ "$CLUSTER_BASE_PORT" =~ ^[0-9]+$ ]] || die "bad KAFKA_CLUSTER_BASE_PORT: $CLUSTER_BASE_PORT"
CLUSTER_DIR="${KAFKA_CLUSTER_DIR:-/tmp/aepiot-kafka-cluster-$CLUSTER_BASE_PORT}"
CLUSTER_NODES=""

cluster_nodes() { # the node count: --nodes, else what the last start used, else 3
  if [[ -n "$CLUSTER_NODES" ]]; then echo "$CLUSTER_NODES"
  elif [[ -f "$CLUSTER_DIR/nodes" ]]; then cat "$CLUSTER_DIR/nodes"
  else echo 3; fi
}

node_port() { echo $((CLUSTER_BASE_PORT + $1)); }
node_controller_port() { echo $((CLUSTER_BASE_PORT + 10 + $1)); }

check_node() { # N
  local n="$1" count
  count="$(cluster_nodes)"
  [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1 && n <= count)) || die "node must be 1..$count, got: ${n:-nothing}"
}

cluster_bootstrap() {
  local i out=() count
  count="$(cluster_nodes)"
  for ((i = 1; i <= count; i++)); do out+=("$HOST:$(node_port "$i")"); done
  (IFS=,; echo "${out[*]}")
}

node_sh() { # N COMMAND [ARGS...]: this script for node N
  local n="$1" count voters="" i rf isr
  shift
  count="$(cluster_nodes)"
  for ((i = 1; i <= count; i++)); do voters+="${voters:+,}$i@$HOST:$(node_controller_port "$i")"; done
  rf=$((count < 3 ? count : 3))
  isr=$((rf >= 3 ? 2 : 1))
  KAFKA_PORT="$(node_port "$n")" KAFKA_CONTROLLER_PORT="$(node_controller_port "$n")" \
    KAFKA_DATA_DIR="$CLUSTER_DIR/node-$n" KAFKA_NODE_ID="$n" KAFKA_QUORUM_VOTERS="$voters" \
    KAFKA_REPLICATION_FACTOR="$rf" KAFKA_MIN_ISR="$isr" \
    KAFKA_CLUSTER_ID="$(cat "$CLUSTER_DIR/cluster.id" 2>/dev/null || true)" \
    KAFKA_HEAP_OPTS="${KAFKA_CLUSTER_HEAP_OPTS:--Xms256m -Xmx512m}" \
    bash "${BASH_SOURCE[0]}" "$@"
}

cluster_start() { # [--fresh]
  local fresh=""
  while (($#)); do
    case "$1" in
      --fresh) fresh=1 ;;
      *) die "cluster start: unknown argument $1" ;;
    esac
    shift
  done
  local count
  count="$(cluster_nodes)"
  [[ "$count" =~ ^[0-9]+$ ]] && ((count >= 1 && count <= 9)) || die "--nodes must be 1..9, got: $count"
  [[ -z "$fresh" ]] || cluster_wipe
  if [[ -f "$CLUSTER_DIR/nodes" && "$(cat "$CLUSTER_DIR/nodes")" != "$count" ]] \
    && compgen -G "$CLUSTER_DIR/node-*/data/meta.properties" >/dev/null; then
    die "$CLUSTER_DIR holds a cluster of $(cat "$CLUSTER_DIR/nodes") nodes; use --nodes $(cat "$CLUSTER_DIR/nodes"), or start --fresh"
  fi
  mkdir -p "$CLUSTER_DIR"
  echo "$count" >"$CLUSTER_DIR/nodes"
  # every node is formatted with the same cluster id
  [[ -s "$CLUSTER_DIR/cluster.id" ]] || new_cluster_id >"$CLUSTER_DIR/cluster.id"
  check_java "Kafka $KAFKA_VERSION"
  ensure_cache
  # The nodes start together: none serves clients before a quorum of controllers is up. Nodes
  # this command started are stopped again if any fails, or if it is interrupted.
  local i pids=() started=() failed=0
  for ((i = 1; i <= count; i++)); do
    if node_sh "$i" status >/dev/null 2>&1; then continue; fi
    started+=("$i")
    node_sh "$i" start >"$CLUSTER_DIR/start-node-$i.out" 2>&1 &
    pids+=($!)
  done
  # shellcheck disable=SC2317
  undo() {
    local n
    for n in "${started[@]+"${started[@]}"}"; do node_sh "$n" stop >/dev/null 2>&1 || true; done
  }
  trap 'undo; exit 130' INT TERM
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      failed=1
      echo "----- node ${started[$i]} -----" >&2
      cat "$CLUSTER_DIR/start-node-${started[$i]}.out" >&2
    fi
  done
  if ((failed)); then
    undo
    trap - INT TERM
    die "the cluster did not start; the nodes this command started are stopped again"
  fi
  trap - INT TERM
  log "cluster of $count nodes ready: $(cluster_bootstrap) (data $CLUSTER_DIR)"
}

cluster_stop() {
  local i count pids=() status=0
  count="$(cluster_nodes)"
  for ((i = 1; i <= count; i++)); do
    [[ -d "$CLUSTER_DIR/node-$i" ]] || continue
    node_sh "$i" stop &
    pids+=($!)
  done
  for i in "${pids[@]+"${pids[@]}"}"; do wait "$i" || status=1; done
  return "$status"
}

cluster_wipe() {
  cluster_stop
  if [[ -d "$CLUSTER_DIR" ]]; then
    rm -rf "$CLUSTER_DIR"
    log "deleted $CLUSTER_DIR"
  fi
}

cluster_status() {
  local i count status=0 line
  count="$(cluster_nodes)"
  for ((i = 1; i <= count; i++)); do
    if line="$(node_sh "$i" status 2>&1)"; then :; else status=1; fi
    echo "node $i: $line"
  done
  return "$status"
}

cluster_leader() { # TOPIC PARTITION
  [[ $# -eq 2 && "$2" =~ ^[0-9]+$ ]] || die "usage: kafka.sh cluster leader TOPIC PARTITION"
  local out leader
  out="$(timeout 30 kcat -b "$(cluster_bootstrap)" -L -t "$1" -m 10 2>&1)" || die "kcat -L failed: $out"
  leader="$(printf '%s\n' "$out" | sed -n "s/^ *partition $2, leader \(-\{0,1\}[0-9]*\),.*/\1/p" | head -n1)"
  [[ -n "$leader" ]] || die "no partition $2 of $1 in the metadata: $out"
  echo "$leader"
}

cluster_coordinator() { # group G | transaction ID
  [[ $# -eq 2 ]] || die "usage: kafka.sh cluster coordinator group GROUP | transaction TRANSACTIONAL_ID"
  local out id
  case "$1" in
    group)
      out="$(run_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
        --bootstrap-server "$(cluster_bootstrap)" --describe --state --group "$2" 2>&1)" || die "$out"
      # GROUP  COORDINATOR (ID)  ...: "127.0.0.1:20102  (2)"
      id="$(printf '%s\n' "$out" | sed -n 's/.*:[0-9]\{1,5\} *(\([0-9]*\)).*/\1/p' | head -n1)" ;;
    transaction)
      out="$(run_tool org.apache.kafka.tools.TransactionsCommand \
        --bootstrap-server "$(cluster_bootstrap)" describe --transactional-id "$2" 2>&1)" || die "$out"
      # CoordinatorId  TransactionalId  ...
      id="$(printf '%s\n' "$out" | awk 'NR == 2 {print $1}')" ;;
    *) die "usage: kafka.sh cluster coordinator group GROUP | transaction TRANSACTIONAL_ID" ;;
  esac
  [[ "$id" =~ ^[0-9]+$ ]] || die "no coordinator in: $out"
  echo "$id"
}

cmd_cluster() {
  local args=()
  while (($#)); do
    case "$1" in
      --nodes) [[ $# -ge 2 ]] || die "--nodes needs a value"; CLUSTER_NODES="$2"; shift 2 ;;
      --nodes=*) CLUSTER_NODES="${1#--nodes=}"; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  set -- "${args[@]+"${args[@]}"}"
  local sub="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$sub" in
    start) cluster_start "$@" ;;
    stop) cluster_stop ;;
    status) cluster_status ;;
    kill) check_node "${1:-}"; node_sh "$1" kill9 ;;
    stop-node) check_node "${1:-}"; node_sh "$1" stop ;;
    start-node) check_node "${1:-}"; node_sh "$1" start ;;
    bootstrap) cluster_bootstrap ;;
    port) check_node "${1:-}"; node_port "$1" ;;
    create-topic)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "usage: kafka.sh cluster create-topic NAME PARTITIONS [TopicCommand args...]"
      local name="$1" parts="$2"; shift 2
      run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cluster_bootstrap)" \
        --create --if-not-exists --topic "$name" --partitions "$parts" "$@" ;;
    delete-topic)
      [[ $# -ge 1 ]] || die "usage: kafka.sh cluster delete-topic NAME"
      run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cluster_bootstrap)" \
        --delete --if-exists --topic "$1" ;;
    tool) [[ $# -ge 1 ]] || die "usage: kafka.sh cluster tool CLASS [ARGS...]"; run_tool "$@" ;;
    leader) cluster_leader "$@" ;;
    coordinator) cluster_coordinator "$@" ;;
    logs) check_node "${1:-}"; local n="$1"; shift; node_sh "$n" logs "$@" ;;
    wipe) cluster_wipe ;;
    info)
      local i count
      count="$(cluster_nodes)"
      echo "nodes=$count"
      echo "bootstrap=$(cluster_bootstrap)"
      echo "cluster_dir=$CLUSTER_DIR"
      for ((i = 1; i <= count; i++)); do
        echo "node$i=$HOST:$(node_port "$i") controller=$HOST:$(node_controller_port "$i") data=$CLUSTER_DIR/node-$i"
      done ;;
    *) usage >&2; die "unknown cluster command: ${sub:-(none)}" ;;
  esac
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  create-topic) cmd_create_topic "$@" ;;
  delete-topic)
    [[ $# -ge 1 ]] || die "usage: kafka.sh delete-topic NAME"
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$PORT" --delete --if-exists --topic "$1" ;;
  list-topics) run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$PORT" --list ;;
  kill9) cmd_kill9 ;;
  logs) cmd_logs "$@" ;;
  bootstrap) echo "$HOST:$PORT" ;;
  tool)
    [[ $# -ge 1 ]] || die "usage: kafka.sh tool CLASS [ARGS...]"
    run_tool "$@" ;;
  fetch) ensure_cache; echo "$CACHE_DIR" ;;
  info) cmd_info ;;
  cluster) cmd_cluster "$@" ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) usage >&2; die "unknown command: $cmd" ;;
esac
