{{/* Names, labels and the engine's arguments, shared by every template. */}}

{{- define "chat-engine.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chat-engine.fullname" -}}
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

{{- define "chat-engine.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chat-engine.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chat-engine.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "chat-engine.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The image, refusing a floating tag: a rollout must run what was tested. */}}
{{- define "chat-engine.image" -}}
{{- $tag := toString .Values.image.tag }}
{{- if or (eq $tag "") (eq $tag "latest") }}
{{- fail "image.tag must name a version (e.g. 0.1.0), not be empty or latest" }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* Seconds Kubernetes waits after preStop + SIGTERM: sleep, drain, Kafka flush (5 s), margin. */}}
{{- define "chat-engine.terminationGrace" -}}
{{- if .Values.terminationGracePeriodSeconds }}
{{- .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add .Values.preStopSleepSeconds .Values.drainSeconds 10 }}
{{- end }}
{{- end }}

{{/* Secrets mounted as files: values key, engine flag, directory name. */}}
{{- define "chat-engine.secretFiles" -}}
- {value: jwtSecret, flag: --auth-jwt-secret-file, dir: jwt-secret}
- {value: jwtPublicKey, flag: --auth-jwt-public-key-file, dir: jwt-public-key}
- {value: apiKeys, flag: --api-key-file, dir: api-keys}
{{- end }}

{{/* The TOML file of .Values.config (keys are flag names without --). */}}
{{- define "chat-engine.configToml" -}}
{{- range $key, $value := .Values.config }}
{{- if kindIs "string" $value }}
{{ $key }} = {{ $value | quote }}
{{- else if kindIs "bool" $value }}
{{ $key }} = {{ $value }}
{{- else if or (kindIs "float64" $value) (kindIs "int" $value) (kindIs "int64" $value) }}
{{ $key }} = {{ $value | int64 }}
{{- else }}
{{- fail (printf "config.%s: only strings, whole numbers and booleans" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Mounts of the config file and the secrets; empty when none is set. */}}
{{- define "chat-engine.volumeMounts" -}}
{{- if .Values.config }}
- name: config
  mountPath: /etc/chat-engine/config
  readOnly: true
{{- end }}
{{- range $s := include "chat-engine.secretFiles" . | fromYamlArray }}
{{- if (index $.Values.secrets $s.value).secretName }}
- name: {{ $s.dir }}
  mountPath: /etc/chat-engine/secrets/{{ $s.dir }}
  readOnly: true
{{- end }}
{{- end }}
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: /etc/chat-engine/tls
  readOnly: true
{{- end }}
{{- end }}

{{/* Secret files are readable by the engine's group (fsGroup) only: mode 0440. */}}
{{- define "chat-engine.volumes" -}}
{{- if .Values.config }}
- name: config
  configMap:
    name: {{ include "chat-engine.fullname" . }}
{{- end }}
{{- range $s := include "chat-engine.secretFiles" . | fromYamlArray }}
{{- $secret := index $.Values.secrets $s.value }}
{{- if $secret.secretName }}
- name: {{ $s.dir }}
  secret:
    secretName: {{ $secret.secretName }}
    defaultMode: 0440
    items:
      - key: {{ $secret.key }}
        path: {{ $secret.key }}
{{- end }}
{{- end }}
{{- if .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
