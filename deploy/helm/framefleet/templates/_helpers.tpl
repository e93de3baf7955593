{{- define "framefleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "framefleet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "framefleet.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "framefleet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "framefleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "framefleet.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{- define "framefleet.storeSecret" -}}
{{ .Values.store.existingSecret | default (printf "%s-store" (include "framefleet.fullname" .)) }}
{{- end -}}
{{- define "framefleet.s3Secret" -}}
{{ .Values.s3.existingSecret | default (printf "%s-s3" (include "framefleet.fullname" .)) }}
{{- end -}}
{{- define "framefleet.tlsSecret" -}}
{{ .Values.tls.existingSecret | default (printf "%s-tls" (include "framefleet.fullname" .)) }}
{{- end -}}
{{- define "framefleet.tokensSecret" -}}
{{ .Values.tokens.existingSecret | default (printf "%s-tokens" (include "framefleet.fullname" .)) }}
{{- end -}}
{{- define "framefleet.hasS3Keys" -}}
{{- if or .Values.s3.existingSecret .Values.s3.accessKeyId }}true{{ end -}}
{{- end -}}

{{/* The same non-root, no-privilege container settings everywhere (user 10001 of the image). */}}
{{- define "framefleet.containerSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Settings coordinator and agents share: S3 and tracing. */}}
{{- define "framefleet.commonEnv" -}}
- name: AWS_REGION
  value: {{ .Values.s3.region | quote }}
{{- with .Values.s3.endpoint }}
- name: FRAMEFLEET_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if include "framefleet.hasS3Keys" . }}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ include "framefleet.s3Secret" . }}, key: AWS_ACCESS_KEY_ID}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ include "framefleet.s3Secret" . }}, key: AWS_SECRET_ACCESS_KEY}}
{{- end }}
{{- with .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_INSECURE
  value: "true"
{{- end }}
{{- end -}}

{{/* Work for agents: queued (from the coordinators; max, as each reports the same table) plus
running (the agents' busy slots). A missing coordinator series leaves the query empty, an error
for KEDA (ignoreNullValues false), which then holds the fallback replicas: no scrape is never
"no work". A missing agent series is 0 busy slots: no agent runs. */}}
{{- define "framefleet.workQuery" -}}
{{- $ns := printf "{namespace=%q}" .Release.Namespace -}}
max(framefleet_queue_depth{{ $ns }}) + (sum(framefleet_agent_slots_busy{{ $ns }}) or vector(0))
{{- end -}}

{{/* What the coordinator's --http port speaks: HTTPS with its gRPC certificate when TLS is on
(framefleet/commands/servers.py, _server_tls), for probes and scrapes alike. */}}
{{- define "framefleet.coordinatorScheme" -}}
{{ if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end -}}

{{/* Pod annotations: a change to what the chart renders into a Secret (env and files the pods
read at start) rolls the pods. Existing Secrets are outside the chart: TLS material and tokens
in them are reloaded by the coordinator without a restart; a new store URL needs
`kubectl rollout restart`. */}}
{{- define "framefleet.checksums" -}}
checksum/secrets: {{ include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- end -}}
