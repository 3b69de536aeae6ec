#!/usr/bin/env bash
# Runs the whole test suite: installs the Debian packages the tests use (if missing), starts the
# project's Kafka broker (if not running; scripts/kafka.sh fetches Kafka from Maven Central once),
# then `cargo test`. Set KAFKA_BOOTSTRAP=host:port to test against another broker.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-ci-deps.sh
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  bash scripts/kafka.sh start
  export KAFKA_BOOTSTRAP="$(bash scripts/kafka.sh bootstrap)"
fi
cargo test "$@"
# The Helm chart: lint, render (default and full values), config check of the rendered config.
bash scripts/helm-check.sh
