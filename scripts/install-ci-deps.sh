#!/usr/bin/env bash
# scripts/install-ci-deps.sh — install the Debian packages that CI and
# developers need (idempotent; returns at once when everything is present).
#
#   kcat          Kafka CLI producer/consumer (smoke tests against scripts/kafka.sh)
#   prometheus    Prometheus server binary (metrics tests); its service is NOT started
#   pkg-config libssl-dev zlib1g-dev cmake build-essential
#                 native build deps of rdkafka-sys (librdkafka built from source)
#   curl jq       HTTP checks and JSON in scripts
#   openssl       CLI that makes the test CA and certificates (tests/security.rs)
#   chromium chromium-driver
#                 headless browser and its WebDriver, for the status page test (tests/status_page.rs)
#   nftables      packet filter: the cluster fault scenarios black-hole a broker's ports
#                 (tests/cluster_faults.rs; the rules need root)
#   gnuplot-nox   plots of the scale curves (benches/scale.sh --plot; CI draws the smoke's)
#   python3       (only if there is none) for the package below
#
# and Python packages from PyPI, with pip (no virtualenv: the machine's python3, as the tests
# call it):
#   standardwebhooks  the Standard Webhooks reference library: tests verify the webhook
#                     signatures with it (tests/standard_webhooks_verify.py), an implementation
#                     this project did not write
#   confluent-kafka[avro,protobuf,json] (pinned)  Confluent's own Schema Registry serializers
#                     and deserializer: tests/fixtures/sr_clients.py produces and reads records
#                     in the wire format with them
#
# and the Schema Registry the tests run (scripts/registry.sh fetch: Apicurio Registry from Maven
# Central into its cache, once; needs mvn, like scripts/kafka.sh).
#
# and Jaeger (the traces' collector of tests/tracing.rs), built from the Go module proxy with the
# Go toolchain into a cache once (scripts/jaeger.sh build; ~10 minutes on 2 cores the first time,
# nothing after).
#
# Usage: scripts/install-ci-deps.sh [extra-debian-package ...]
# Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(kcat prometheus pkg-config libssl-dev zlib1g-dev cmake build-essential curl jq openssl chromium chromium-driver nftables gnuplot-nox "$@")
command -v python3 >/dev/null || PACKAGES+=(python3 python3-pip)

installed() { # PKG -> 0 when dpkg has it fully installed
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == "installed" ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

# confluent-kafka's version, and the import that proves its extras (fastavro, protobuf,
# jsonschema) are there too.
CONFLUENT_KAFKA=2.16.2
CONFLUENT_CHECK="import confluent_kafka, fastavro, google.protobuf, jsonschema, importlib.metadata
v = importlib.metadata.version('confluent-kafka')
assert v == '$CONFLUENT_KAFKA', v"

# A Python package, once python3 is there (pip; Debian's externally managed Python needs
# --break-system-packages, which older pips do not know). pip_dep IMPORT-CHECK REQUIREMENT
pip_dep() {
  if python3 -c "$1" 2>/dev/null; then
    return 0
  fi
  echo "install-ci-deps: installing $2 (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "$2" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$2"
  python3 -c "$1" || {
    echo "install-ci-deps: python3 cannot import $2 after installing it" >&2
    exit 1
  }
}

python_deps() {
  pip_dep 'import standardwebhooks' standardwebhooks
  pip_dep "$CONFLUENT_CHECK" "confluent-kafka[avro,protobuf,json]==$CONFLUENT_KAFKA"
  # the registry's cache (a no-op once filled)
  bash "$(dirname "${BASH_SOURCE[0]}")/registry.sh" fetch >/dev/null
}

# Jaeger, once Go is there (the machine's, as for Helm: scripts/install-helm.sh).
jaeger() {
  bash "$(dirname "${BASH_SOURCE[0]}")/jaeger.sh" build >/dev/null
}

if ((${#missing[@]} == 0)); then
  echo "install-ci-deps: all ${#PACKAGES[@]} packages already installed"
  python_deps
  jaeger
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-ci-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

echo "install-ci-deps: installing ${missing[*]}"

# apt-get update only when the package lists are absent or lack a candidate
# for a missing package (cheap check; avoids a network round trip otherwise).
needs_update=0
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  needs_update=1
else
  for p in "${missing[@]}"; do
    cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [[ -z "$cand" || "$cand" == "(none)" ]]; then needs_update=1; break; fi
  done
fi

apt_install() {
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# In containers and CI, keep package post-install scripts from starting
# daemons (prometheus would otherwise start its service on :9090 where an init
# system is reachable). Only if no policy is in place already; removed after.
POLICY=/usr/sbin/policy-rc.d
policy_added=0
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  policy_added=1
fi
cleanup() { if ((policy_added)); then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

if ((needs_update)); then
  "${SUDO[@]}" apt-get update -q
  apt_install
elif ! apt_install; then
  # stale lists (e.g. a package version gone from the mirror): refresh once, retry
  "${SUDO[@]}" apt-get update -q
  apt_install
fi

still=()
for p in "${missing[@]}"; do installed "$p" || still+=("$p"); done
if ((${#still[@]})); then
  echo "install-ci-deps: still missing after install: ${still[*]}" >&2
  exit 1
fi
python_deps
jaeger
echo "install-ci-deps: done"
