{{/* Name of the chart's objects: the release name, with the chart name unless it contains it. */}}
{{- define "norn.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's objects. */}}
{{- define "norn.operator" -}}
{{- printf "%s-operator" (include "norn.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels selecting the operator's pods. */}}
{{- define "norn.selectorLabels" -}}
app.kubernetes.io/name: norn-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object of the chart. */}}
{{- define "norn.labels" -}}
{{ include "norn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator's ServiceAccount. */}}
{{- define "norn.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "norn.operator" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
