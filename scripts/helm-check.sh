#!/usr/bin/env bash
# scripts/helm-check.sh — checks the Helm chart (helm/aepiot-stream) the way CI does:
#   1. `helm lint` and `helm template`, with the default values, with values-full.yaml
#      (everything enabled: ServiceMonitor, KEDA, secrets, dashboard, a region on another cluster)
#      with values-webhooks-eu.yaml (mode `webhooks` on that regional cluster), and with
#      values-full.yaml plus kafka.staticMembership=true (a StatefulSet, pod name = group.instance.id);
#   2. the rendered ConfigMap's config.toml, for each, through `aepiot-stream config check` with the
#      AEPIOT_* environment the Deployment gives the pod (Secret-backed values as placeholders);
#   3. the dashboard ConfigMap carries the dashboard JSON unchanged, labelled for the Grafana sidecar;
#   4. render-time guards: a termination grace period not longer than the drain deadline, and a
#      chart-managed key repeated in `config`, must fail; an unknown key must fail config check.
# Helm is built once from source (scripts/install-helm.sh). Needs python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=helm/aepiot-stream
HELM="$(bash scripts/install-helm.sh)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log() { echo "helm-check: $*" >&2; }
die() { echo "helm-check: FAILED: $*" >&2; exit 1; }

BIN="${CARGO_TARGET_DIR:-target}/debug/aepiot-stream"
# A no-op when `cargo test` just built it (scripts/test.sh); builds it when missing or stale.
cargo build --quiet --bin aepiot-stream

# Prints the value of `data.<key>` (a `|` or `|-` block scalar) of the one ConfigMap in the YAML
# on stdin. Standard library only: PyYAML is not always installed.
extract() {
  python3 -c '
import sys
key = sys.argv[1] + ":"
lines = sys.stdin.read().split("\n")
out, indent, inside = [], None, False
for line in lines:
    if not inside:
        s = line.strip()
        if s.startswith(key) and s[len(key):].strip() in ("|", "|-", "|+"):
            inside, key_indent = True, len(line) - len(line.lstrip())
        continue
    if line.strip() == "":
        out.append("")
        continue
    ind = len(line) - len(line.lstrip())
    if indent is None:
        indent = ind
    if ind < indent or ind <= key_indent:
        break
    out.append(line[indent:])
if not inside:
    sys.exit("no data." + sys.argv[1] + " block in the rendered ConfigMap")
print("\n".join(out).rstrip("\n"))
' "$1"
}

# Prints the env of the rendered Deployment's container as NAME=VALUE lines: plain values as they
# are, Secret-backed ones (secretKeyRef) as a placeholder, so `config check` sees what a pod sees.
pod_env() {
  python3 -c '
import re, sys
lines = sys.stdin.read().split("\n")
out, i = [], 0
while i < len(lines):
    m = re.match(r"^(\s*)- name: (AEPIOT_\S+)\s*$", lines[i])
    if m:
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if nxt.startswith("value:"):
            v = nxt[len("value:"):].strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"\x27":
                v = v[1:-1]
            out.append(m.group(2) + "=" + v)
        elif nxt.startswith("valueFrom:") and "secretKeyRef:" in "".join(lines[i + 2:i + 3]):
            out.append(m.group(2) + "=placeholder-from-secret")
        elif nxt.startswith("valueFrom:") and "fieldPath: metadata.name" in "".join(lines[i + 2:i + 4]):
            out.append(m.group(2) + "=aepiot-stream-0")
    i += 1
print("\n".join(out))
'
}

check_values() { # NAME [helm args...]   (WORKLOAD: the pods' kind, Deployment by default)
  local name="$1" workload="${WORKLOAD:-Deployment}"; shift
  log "[$name] helm lint"
  "$HELM" lint --strict "$CHART" "$@" >"$WORK/lint.out" 2>&1 || { cat "$WORK/lint.out" >&2; die "[$name] helm lint"; }
  log "[$name] helm template"
  "$HELM" template aepiot "$CHART" --namespace iot "$@" >"$WORK/$name.yaml" || die "[$name] helm template"
  local kinds
  kinds="$(grep -E '^kind: ' "$WORK/$name.yaml" | sort | uniq -c | awk '{printf "%s×%s ", $1, $3}')"
  log "[$name] rendered: $kinds"
  for k in "$workload" ConfigMap Service PodDisruptionBudget ServiceAccount; do
    grep -q "^kind: $k\$" "$WORK/$name.yaml" || die "[$name] no $k rendered"
  done

  "$HELM" template aepiot "$CHART" --namespace iot "$@" --show-only templates/configmap.yaml \
    | extract config.toml >"$WORK/$name.config.toml" || die "[$name] cannot extract config.toml"
  local envs=()
  mapfile -t envs < <("$HELM" template aepiot "$CHART" --namespace iot "$@" --show-only templates/deployment.yaml | pod_env)
  log "[$name] aepiot-stream config check (pod env: ${envs[*]%%=*})"
  # Only the pod's AEPIOT_* variables: none leak in from the environment running this script.
  local unset=()
  for v in $(compgen -e | grep '^AEPIOT_' || true); do unset+=(-u "$v"); done
  env "${unset[@]}" "${envs[@]}" "$BIN" config check --config "$WORK/$name.config.toml" >"$WORK/check.out" 2>&1 || {
    echo "--- rendered config.toml ---" >&2; cat -n "$WORK/$name.config.toml" >&2
    echo "--- config check ---" >&2; cat "$WORK/check.out" >&2
    die "[$name] the rendered config.toml does not pass aepiot-stream config check"
  }
  cp "$WORK/check.out" "$WORK/$name.check.out"
  # The chart's own keys made it into the effective config.
  grep -q '^metrics_addr = "0.0.0.0:9464"' "$WORK/check.out" || { cat "$WORK/check.out" >&2; die "[$name] metrics_addr not 0.0.0.0:9464 in the effective config"; }

  if grep -q 'grafana_dashboard: "1"' "$WORK/$name.yaml"; then
    "$HELM" template aepiot "$CHART" --namespace iot "$@" --show-only templates/dashboard-configmap.yaml \
      | extract aepiot-stream.json >"$WORK/$name.dashboard.json"
    python3 -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
sys.exit(0 if a == b else "the dashboard ConfigMap differs from " + sys.argv[2])
' "$WORK/$name.dashboard.json" "$CHART/dashboards/aepiot-stream.json" || die "[$name] dashboard ConfigMap"
    log "[$name] dashboard ConfigMap: the dashboard JSON, labelled grafana_dashboard=\"1\""
  fi
}

expect_failure() { # WHAT PATTERN [helm args...]
  local what="$1" pattern="$2"; shift 2
  if "$HELM" template aepiot "$CHART" "$@" >"$WORK/fail.out" 2>&1; then
    die "helm template should have failed: $what"
  fi
  grep -q "$pattern" "$WORK/fail.out" || { cat "$WORK/fail.out" >&2; die "unexpected error for: $what"; }
  log "rejected as expected: $what"
}

check_values default
check_values full -f "$CHART/values-full.yaml"
check_values webhooks-eu -f "$CHART/values-webhooks-eu.yaml"
WORKLOAD=StatefulSet check_values static -f "$CHART/values-full.yaml" --set kafka.staticMembership=true
grep -q 'args: \["run", ' "$WORK/full.yaml" || die "[full] the pods must run \`run\`"
grep -q 'args: \["webhooks", ' "$WORK/webhooks-eu.yaml" || die "[webhooks-eu] the pods must run \`webhooks\`"
grep -q 'brokers = "kafka-0.kafka.eu-central' "$WORK/webhooks-eu.config.toml" || die "[webhooks-eu] not on the EU cluster"
grep -q '^\[clusters.eu\]' "$WORK/full.config.toml" || die "[full] no [clusters.eu]"
grep -q '^otlp_endpoint = "http://otel-collector' "$WORK/full.check.out" || die "[full] tracing.otlp_endpoint not in the effective config"
grep -q '^sample_ratio = 0.05' "$WORK/full.check.out" || die "[full] tracing.sample_ratio not in the effective config"
# The alert rule: off by default; with the values' threshold in seconds where enabled.
! grep -q 'kind: PrometheusRule' "$WORK/default.yaml" || die "[default] a PrometheusRule without alerts.enabled"
grep -q 'aepiot_webhook_endpoint_down_seconds{namespace="iot"}) > 900$' "$WORK/full.yaml" || die "[full] no AepiotWebhookEndpointDown rule at 15 minutes"
grep -q 'aepiot_webhook_endpoint_down_seconds{namespace="iot"}) > 1800$' "$WORK/webhooks-eu.yaml" || die "[webhooks-eu] no AepiotWebhookEndpointDown rule at 30 minutes"
log "alert rule AepiotWebhookEndpointDown rendered with each values file's threshold"

# Static membership: a StatefulSet (stable pod names) whose pods take their name as
# group.instance.id, under the classic protocol, and the KEDA target follows the kind.
grep -q '^kind: Deployment$' "$WORK/static.yaml" && die "[static] a Deployment was rendered too"
grep -A3 'name: AEPIOT_GROUP_INSTANCE_ID' "$WORK/static.yaml" | grep -q 'fieldPath: metadata.name' \
  || die "[static] AEPIOT_GROUP_INSTANCE_ID is not the pod name"
grep -q '^group_protocol = "classic"' "$WORK/static.check.out" || die "[static] group_protocol is not classic"
grep -q '^group_instance_id = "aepiot-stream-0"' "$WORK/static.check.out" || die "[static] the effective group_instance_id is not the pod name"
grep -A2 'scaleTargetRef:' "$WORK/static.yaml" | grep -q 'kind: StatefulSet' || die "[static] KEDA does not target the StatefulSet"
grep -q 'AEPIOT_GROUP_INSTANCE_ID' "$WORK/default.yaml" && die "[default] static membership is opt-in"

# values-full enables everything: make sure it did.
for k in ServiceMonitor ScaledObject TriggerAuthentication; do
  grep -q "^kind: $k\$" "$WORK/full.yaml" || die "[full] no $k rendered"
done
grep -q 'secretKeyRef' "$WORK/full.yaml" || die "[full] no secretKeyRef env"
grep -q '^  replicas:' "$WORK/full.yaml" && die "[full] KEDA on: the Deployment must not set replicas"
grep -q '^  replicas: 3$' "$WORK/default.yaml" || die "[default] replicas: 3 expected"

expect_failure "terminationGracePeriodSeconds <= drain" "must be longer than drainTimeoutMs" \
  --set terminationGracePeriodSeconds=10 --set drainTimeoutMs=10000
expect_failure "an unknown mode" "mode must be" --set mode=replay
expect_failure "an alert threshold under a minute" "webhookEndpointDownMinutes must be at least 1" \
  --set alerts.enabled=true --set alerts.webhookEndpointDownMinutes=0
expect_failure "KEDA with mode webhooks" "autoscaling.keda scales on the input lag" \
  -f "$CHART/values-full.yaml" --set mode=webhooks
expect_failure "static membership with mode webhooks" "kafka.staticMembership is for mode" \
  -f "$CHART/values-webhooks-eu.yaml" --set kafka.staticMembership=true
expect_failure "group_protocol in config with static membership" "is set by the chart" \
  --set kafka.staticMembership=true --set-string 'config=group_protocol = "consumer"'
expect_failure "brokers repeated in config" "is set by the chart" \
  --set-string 'config=brokers = "x:9092"'
expect_failure "a [schema_registry] table in config beside schemaRegistry.url" \
  "either schemaRegistry.url or a \[schema_registry\] table" --set schemaRegistry.url=http://r:8081 \
  --set-string 'config=[schema_registry]
url = "http://other:8081"'
expect_failure "schemaRegistry.existingSecret without a url" "existingSecret needs schemaRegistry.url" \
  --set schemaRegistry.existingSecret=creds

# And config check has teeth: an unknown key in `config` renders, but must not pass the check.
"$HELM" template aepiot "$CHART" --set-string 'config=no_such_key = 1' --show-only templates/configmap.yaml \
  | extract config.toml >"$WORK/bad.config.toml"
if "$BIN" config check --config "$WORK/bad.config.toml" >"$WORK/check.out" 2>&1; then
  die "aepiot-stream config check accepted an unknown key"
fi
grep -q no_such_key "$WORK/check.out" || { cat "$WORK/check.out" >&2; die "config check failed for another reason"; }
log "rejected as expected: an unknown key in config (by aepiot-stream config check)"

log "OK (helm $("$HELM" version --short))"
