#!/usr/bin/env bash
# Runs the whole test suite: installs the Debian packages the tests use (if missing), starts the
# project's Kafka broker (if not running; scripts/kafka.sh fetches Kafka from Maven Central once)
# and a second one, a cluster of its own, for the data-residency tests, then `cargo test`. Set
# KAFKA_BOOTSTRAP=host:port (and KAFKA_BOOTSTRAP_EU for the second cluster) to test against other
# brokers. The outage test (tests/residency_outage.rs) starts, stops and restarts a third broker of
# its own (port 19698), so stopping it disturbs no other test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-ci-deps.sh
# Brokers this script starts are stopped when it ends, pass or fail (one left running idles on a
# core and skews whatever is timed next); a broker that was already running is left alone.
started=()
started_registry=0
started_jaeger=0
stop_started() {
  local b
  if ((started_registry)); then bash scripts/registry.sh stop >/dev/null 2>&1 || true; fi
  if ((started_jaeger)); then bash scripts/jaeger.sh stop >/dev/null 2>&1 || true; fi
  for b in "${started[@]+"${started[@]}"}"; do env $b bash scripts/kafka.sh stop >/dev/null 2>&1 || true; done
  # The cluster of tests/cluster_faults.rs (its test process's watchdog stops it; this is for a
  # run interrupted before the watchdog could), and its black hole.
  nft delete table inet aepiot_faults_20100 >/dev/null 2>&1 || true
  KAFKA_CLUSTER_DIR=/tmp/aepiot-kafka-cluster-faults-20100 bash scripts/kafka.sh cluster stop >/dev/null 2>&1 || true
}
trap stop_started EXIT
start_broker() { # "KAFKA_PORT=… KAFKA_DATA_DIR=…" (empty for the default broker)
  env $1 bash scripts/kafka.sh status >/dev/null 2>&1 || started+=("$1")
  env $1 bash scripts/kafka.sh start
}
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  start_broker "KAFKA_PORT=9092 KAFKA_DATA_DIR=/tmp/aepiot-kafka-9092"
  export KAFKA_BOOTSTRAP="$(bash scripts/kafka.sh bootstrap)"
fi
# The second cluster: the tests fail, never skip, without it (they would start it themselves).
if [ -z "${KAFKA_BOOTSTRAP_EU:-}" ]; then
  start_broker "KAFKA_PORT=19696 KAFKA_DATA_DIR=/tmp/aepiot-kafka-eu"
  export KAFKA_BOOTSTRAP_EU="$(KAFKA_PORT=19696 bash scripts/kafka.sh bootstrap)"
fi
# The Schema Registry of the Avro / Protobuf tests (tests/avro_output.rs and the Schema Registry
# input tests), Apicurio from scripts/registry.sh, stopped afterwards if started here.
if [ -z "${SCHEMA_REGISTRY_URL:-}" ]; then
  bash scripts/registry.sh status >/dev/null 2>&1 || started_registry=1
  bash scripts/registry.sh start
  export SCHEMA_REGISTRY_URL="$(bash scripts/registry.sh url)"
fi
# Jaeger, the traces' collector of tests/tracing.rs (built once into a cache by
# scripts/install-ci-deps.sh; ports 21115-21118 on 127.0.0.1). The tests fail, never skip, without it.
if [ -z "${JAEGER_QUERY_URL:-}" ]; then
  bash scripts/jaeger.sh status >/dev/null 2>&1 || started_jaeger=1
  bash scripts/jaeger.sh start
  eval "$(bash scripts/jaeger.sh env)"
fi
# `cargo test` includes the CI fault scenarios (tests/faults.rs, 1-2 minutes each): a rolling
# restart of three instances mid-stream, under at_least_once and exactly_once, and the SIGKILL of
# an instance under exactly_once, with the default settings, checked for 0 lost successes; on a
# broker of its own (port 19192, fresh, stopped afterwards). And the cluster checks CI runs
# (tests/cluster_faults.rs): the replication checks on a 3-node cluster of their own (ports
# 20101-20103, 20111-20113) started once and stopped when they end, pass or fail, with two of the
# cluster fault scenarios under exactly-once (the brokers' rolling restart, the coordinators'
# SIGKILL; about 3.5 minutes each); the others are opt-in: scripts/faults.sh --cluster.
cargo test "$@"
# The end-to-end benchmark harness, tiny and on a broker of its own (stopped afterwards): every
# drain, latency and memory run must complete and commit everything. Its figures mean nothing
# (a debug build); timings are never asserted.
smoke_broker=(KAFKA_PORT=19692 KAFKA_DATA_DIR=/tmp/aepiot-kafka-smoke)
started+=("${smoke_broker[*]}")
# KEEP_BROKER=1: the scale smoke below uses the broker too (the trap above stops it).
env "${smoke_broker[@]}" KEEP_BROKER=1 METRICS_PORT=19710 BENCH_WORK_DIR=/tmp/aepiot-e2e-smoke \
  AEPIOT_BIN="${CARGO_TARGET_DIR:-target}/debug/aepiot-stream" bash benches/e2e.sh --smoke
# The scale curves' harness (issue 30), tiny, on the same broker, with its plots drawn: every run
# must drain, commit everything and settle.
env "${smoke_broker[@]}" METRICS_PORT=19720 BENCH_WORK_DIR=/tmp/aepiot-scale-smoke \
  AEPIOT_BIN="${CARGO_TARGET_DIR:-target}/debug/aepiot-stream" bash benches/scale.sh --smoke --plot
# The Helm chart: lint, render (default and full values), config check of the rendered config.
bash scripts/helm-check.sh
