{{/* Names and labels. Rendered by deployctl; logic here is limited to names, labels and defaults. */}}
{{- define "deployctl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "deployctl.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "deployctl.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "deployctl.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels a selector uses: never change between upgrades (a Deployment's selector is immutable). */}}
{{- define "deployctl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deployctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "deployctl.labels" -}}
{{ include "deployctl.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.engine.kind }}
ai.deployctl/plan-hash: {{ .Values.planHash | quote }}
{{- end -}}

{{/* registry/repository:tag, or @digest when one is given (a digest pins the exact bytes). */}}
{{- define "deployctl.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .Values.image.registry) .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the API key: the one the chart makes, or the one named by apiKey.existingSecret. */}}
{{- define "deployctl.apiKeySecret" -}}
{{- if .Values.apiKey.existingSecret -}}
{{- .Values.apiKey.existingSecret -}}
{{- else -}}
{{- printf "%s-api-key" (include "deployctl.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The GPU exporter's labels: its own name, so the engine's Service and Deployment never select its pods. */}}
{{- define "deployctl.exporterSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-gpu-exporter" (include "deployctl.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "deployctl.exporterLabels" -}}
{{ include "deployctl.exporterSelectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gpu-exporter
ai.deployctl/plan-hash: {{ .Values.planHash | quote }}
{{- end -}}

{{/* registry/repository:tag of an image value (the GPU exporter's). */}}
{{- define "deployctl.imageRef" -}}
{{- if .registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .registry) .repository .tag -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}
