{{/* Chart name, truncated to a DNS label. */}}
{{- define "durable-agents.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the suffixed names ("-temporal", "-health") stay within 63 characters. */}}
{{- define "durable-agents.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "durable-agents.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "durable-agents.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: durable-agents
{{- end }}

{{/* Selector labels of one component (operator, temporal-dev); pass (dict "ctx" $ "component" "..."). */}}
{{- define "durable-agents.selectorLabels" -}}
app.kubernetes.io/name: {{ include "durable-agents.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "durable-agents.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "durable-agents.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is set, repository:tag otherwise; pass an image value. */}}
{{- define "durable-agents.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "durable-agents.image" -}}
{{- include "durable-agents.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "durable-agents.runtimeImage" -}}
{{- include "durable-agents.imageRef" (dict "image" .Values.runtimeImage "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* "true" when the chart runs the Temporal dev server: enabled, and no real Temporal named. */}}
{{- define "durable-agents.temporalDev" -}}
{{- if and .Values.temporal.dev.enabled (not .Values.temporal.address) }}true{{ end }}
{{- end }}

{{- define "durable-agents.temporalDevName" -}}
{{- printf "%s-temporal" (include "durable-agents.fullname" .) }}
{{- end }}

{{/* The Temporal frontend the operator uses by default. */}}
{{- define "durable-agents.temporalAddress" -}}
{{- if .Values.temporal.address }}
{{- .Values.temporal.address }}
{{- else if include "durable-agents.temporalDev" . }}
{{- default (printf "%s.%s.svc:%v" (include "durable-agents.temporalDevName" .) .Release.Namespace .Values.temporal.dev.port) .Values.temporal.dev.clientAddress }}
{{- else }}
{{- fail "no Temporal to connect to: set temporal.address (a real Temporal frontend, host:port) or temporal.dev.enabled=true" }}
{{- end }}
{{- end }}

{{/* Container security context of every container: the restricted Pod Security Standard. */}}
{{- define "durable-agents.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod security context; the images run as this numeric non-root user. */}}
{{- define "durable-agents.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Checks of value combinations a schema cannot express; each message says what to change. */}}
{{- define "durable-agents.validate" -}}
{{- $tls := .Values.temporal.tls }}
{{- if and .Values.temporal.apiKeySecret.name $tls.clientCertFile }}
{{- fail "temporal.apiKeySecret and temporal.tls.clientCertFile (mTLS) exclude each other: authenticate with one of them" }}
{{- end }}
{{- if ne (empty $tls.clientCertFile) (empty $tls.clientKeyFile) }}
{{- fail "temporal.tls.clientCertFile and temporal.tls.clientKeyFile go together: set both or neither" }}
{{- end }}
{{- if and (or $tls.caFile $tls.clientCertFile) (not $tls.secretName) }}
{{- fail "temporal.tls.caFile/clientCertFile name keys of temporal.tls.secretName: set secretName" }}
{{- end }}
{{- end }}

{{/* Where the Secret temporal.tls.secretName is mounted in the operator and gateway pods. */}}
{{- define "durable-agents.temporalTLSDir" -}}
/etc/durable-agents/temporal-tls
{{- end }}

{{/* The default Temporal connection as DURABLE_AGENTS_TEMPORAL_* variables: the operator and the gateway
read the same ones (OperatorSettings). */}}
{{- define "durable-agents.temporalEnv" -}}
{{- $tls := .Values.temporal.tls }}
{{- $dir := include "durable-agents.temporalTLSDir" . }}
- name: DURABLE_AGENTS_TEMPORAL_ADDRESS
  value: {{ include "durable-agents.temporalAddress" . | quote }}
- name: DURABLE_AGENTS_TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
{{- with .Values.temporal.apiKeySecret }}
{{- if .name }}
- name: DURABLE_AGENTS_TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- if $tls.enabled }}
- name: DURABLE_AGENTS_TEMPORAL_TLS
  value: "true"
{{- with $tls.serverName }}
- name: DURABLE_AGENTS_TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- with $tls.caFile }}
- name: DURABLE_AGENTS_TEMPORAL_TLS_CA_FILE
  value: {{ printf "%s/%s" $dir . | quote }}
{{- end }}
{{- if $tls.clientCertFile }}
- name: DURABLE_AGENTS_TEMPORAL_TLS_CERT_FILE
  value: {{ printf "%s/%s" $dir $tls.clientCertFile | quote }}
- name: DURABLE_AGENTS_TEMPORAL_TLS_KEY_FILE
  value: {{ printf "%s/%s" $dir $tls.clientKeyFile | quote }}
{{- end }}
{{- end }}
- name: DURABLE_AGENTS_WATCH_NAMESPACES
  value: {{ join "," .Values.watchNamespaces | quote }}
{{- end }}

{{/* The volume mount and the volume of temporal.tls.secretName (nothing without one). */}}
{{- define "durable-agents.temporalTLSMount" -}}
{{- if .Values.temporal.tls.secretName }}
- name: temporal-tls
  mountPath: {{ include "durable-agents.temporalTLSDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "durable-agents.temporalTLSVolume" -}}
{{- if .Values.temporal.tls.secretName }}
- name: temporal-tls
  secret:
    secretName: {{ .Values.temporal.tls.secretName }}
{{- end }}
{{- end }}
