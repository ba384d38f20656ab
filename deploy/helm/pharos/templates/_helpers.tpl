{{- define "pharos.labels" -}}
app.kubernetes.io/part-of: pharos
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
