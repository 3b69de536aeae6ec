{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "aepiot-stream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless it already holds it. */}}
{{- define "aepiot-stream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aepiot-stream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aepiot-stream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aepiot-stream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aepiot-stream.labels" -}}
helm.sh/chart: {{ include "aepiot-stream.chart" . }}
{{ include "aepiot-stream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: stream-processor
{{- end }}

{{- define "aepiot-stream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aepiot-stream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Checks that make a bad release fail at render time rather than in the cluster.
*/}}
{{- define "aepiot-stream.validate" -}}
{{- $grace := int64 .Values.terminationGracePeriodSeconds }}
{{- $drain := int64 .Values.drainTimeoutMs }}
{{- if le (mul $grace 1000) $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d s) must be longer than drainTimeoutMs (%d ms): Kubernetes would SIGKILL the processor while it drains, and the outputs since the last commit would be produced again. Raise terminationGracePeriodSeconds (drain + commit + producer flush: allow about drainTimeoutMs/1000 + 15 s)." $grace $drain) }}
{{- end }}
{{- if not (has .Values.mode (list "run" "webhooks")) }}
{{- fail (printf "mode must be `run` or `webhooks`, not %q" (toString .Values.mode)) }}
{{- end }}
{{- if and (eq .Values.mode "webhooks") .Values.autoscaling.keda.enabled }}
{{- fail "autoscaling.keda scales on the input lag, which mode `webhooks` does not read: disable it" }}
{{- end }}
{{- if and .Values.kafka.staticMembership (ne .Values.mode "run") }}
{{- fail "kafka.staticMembership is for mode `run` (the processor's input group): disable it for mode `webhooks`" }}
{{- end }}
{{- if not .Values.kafka.brokers }}
{{- fail "kafka.brokers must name at least one broker (host:port)" }}
{{- end }}
{{- if not .Values.kafka.inputTopics }}
{{- fail "kafka.inputTopics must name at least one topic" }}
{{- end }}
{{- $managed := list "brokers" "input_topics" "output_topic" "dead_letter_topic" "group_id" "metrics_addr" "drain_timeout_ms" }}
{{- if .Values.kafka.staticMembership }}
{{- $managed = concat $managed (list "group_protocol" "group_instance_id") }}
{{- end }}
{{- /* Top-level keys only: those before the first table header ([clusters.eu] has brokers too). */}}
{{- $topLevel := regexSplit "(?m)^[ \\t]*\\[" ($.Values.config | default "") 2 | first }}
{{- range $managed }}
{{- if regexMatch (printf "(?m)^[ \\t]*%s[ \\t]*=" .) $topLevel }}
{{- fail (printf "`%s` is set by the chart (kafka.*, metrics.port, drainTimeoutMs values): remove it from `config`" .) }}
{{- end }}
{{- end }}
{{- if and .Values.schemaRegistry.url (regexMatch "(?m)^[ \\t]*\\[schema_registry\\]" (.Values.config | default "")) }}
{{- fail "use either schemaRegistry.url or a [schema_registry] table in `config`, not both" }}
{{- end }}
{{- if and .Values.schemaRegistry.existingSecret (not .Values.schemaRegistry.url) }}
{{- fail "schemaRegistry.existingSecret needs schemaRegistry.url" }}
{{- end }}
{{- if and .Values.kafka.properties (regexMatch "(?m)^[ \\t]*\\[kafka\\]" (.Values.config | default "")) }}
{{- fail "use either kafka.properties or a [kafka] table in `config`, not both" }}
{{- end }}
{{- end }}

{{/*
config.toml: the chart-managed keys, then .Values.config, then kafka.properties as [kafka].
Strings go through toJson: a JSON string is a valid TOML basic string.
*/}}
{{- define "aepiot-stream.configToml" -}}
# Rendered by the aepiot-stream Helm chart (release {{ .Release.Name }}).
# Environment variables AEPIOT_* override it; `aepiot-stream config check --config <file>` validates it.
brokers = {{ .Values.kafka.brokers | toString | toJson }}
input_topics = {{ .Values.kafka.inputTopics | toJson }}
output_topic = {{ .Values.kafka.outputTopic | toString | toJson }}
dead_letter_topic = {{ .Values.kafka.deadLetterTopic | toString | toJson }}
group_id = {{ .Values.kafka.groupId | toString | toJson }}
metrics_addr = {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | toJson }}
drain_timeout_ms = {{ int64 .Values.drainTimeoutMs }}
{{- if .Values.kafka.staticMembership }}
# kafka.staticMembership: each pod's group_instance_id is its StatefulSet name (AEPIOT_GROUP_INSTANCE_ID).
group_protocol = "classic"
{{- end }}

{{ .Values.config | default "" | trimSuffix "\n" }}
{{- with .Values.schemaRegistry.url }}

# schemaRegistry.url; credentials from schemaRegistry.existingSecret (AEPIOT_SCHEMA_REGISTRY__*).
[schema_registry]
url = {{ . | toString | toJson }}
{{- with $.Values.schemaRegistry.sslCaLocation }}
ssl_ca_location = {{ . | toString | toJson }}
{{- end }}
{{- end }}
{{- with .Values.kafka.properties }}

[kafka]
{{- range $k, $v := . }}
{{ $k | toJson }} = {{ $v | toString | toJson }}
{{- end }}
{{- end }}
{{- end }}

{{/* The KEDA trigger's topic: the value, else the only input topic when it is a plain name. */}}
{{- define "aepiot-stream.kedaTopic" -}}
{{- if .Values.autoscaling.keda.topic }}
{{- .Values.autoscaling.keda.topic }}
{{- else if and (eq (len .Values.kafka.inputTopics) 1) (not (hasPrefix "^" (first .Values.kafka.inputTopics))) }}
{{- first .Values.kafka.inputTopics }}
{{- end }}
{{- end }}

{{/* The pods' workload: a StatefulSet with kafka.staticMembership (stable names), else a Deployment. */}}
{{- define "aepiot-stream.workloadKind" -}}
{{- ternary "StatefulSet" "Deployment" (.Values.kafka.staticMembership | default false) -}}
{{- end }}
