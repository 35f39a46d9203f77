{{- define "veer-loadtester.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name when it contains "loadtester" (so release flagger-loadtester keeps the
Service name Canary webhooks call), else <release>-veer-loadtester.
*/}}
{{- define "veer-loadtester.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "loadtester" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "veer-loadtester.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "veer-loadtester.selectorLabels" -}}
app.kubernetes.io/name: {{ include "veer-loadtester.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "veer-loadtester.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "veer-loadtester.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: loadtester
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "veer-loadtester.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "veer-loadtester.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" (.Values.serviceAccount.name | default .Values.serviceAccountName) -}}
{{- end -}}
{{- end -}}

{{- define "veer-loadtester.gateConfigMap" -}}
{{- .Values.gateStore.configMapName | default (printf "%s-gates" (include "veer-loadtester.fullname" .)) -}}
{{- end -}}

{{- define "veer-loadtester.tokenSecret" -}}
{{- .Values.token.secretName | default (printf "%s-token" (include "veer-loadtester.fullname" .)) -}}
{{- end -}}

{{- define "veer-loadtester.tokenEnabled" -}}
{{- if or .Values.token.secretName .Values.token.value -}}true{{- end -}}
{{- end -}}

{{/* Cross-key rules the schema cannot express; each message says what to change. */}}
{{- define "veer-loadtester.validate" -}}
{{- if and .Values.allowShell (not .Values.allowCommands) -}}
{{- fail "allowShell is true but allowCommands is empty: no shell command could run. List the commands to allow (regular expressions matched against the whole command line) in allowCommands." -}}
{{- end -}}
{{- if and .Values.allowCommands (not .Values.allowShell) -}}
{{- fail "allowCommands is set but allowShell is false: the patterns would have no effect. Set allowShell=true to allow those commands, or remove allowCommands." -}}
{{- end -}}
{{- if and .Values.token.secretName .Values.token.value -}}
{{- fail "token.secretName and token.value are both set: name an existing Secret, or give the value for the chart to store, not both." -}}
{{- end -}}
{{- if and .Values.unauthenticatedMetrics (not (include "veer-loadtester.tokenEnabled" .)) (not .Values.tokenReview.allowedServiceAccounts) -}}
{{- fail "unauthenticatedMetrics is true but no token or tokenReview.allowedServiceAccounts is set: /metrics is open anyway. Remove unauthenticatedMetrics, or set a token." -}}
{{- end -}}
{{- if and (eq .Values.gateStore.type "file") (gt (.Values.replicaCount | int) 1) -}}
{{- fail (printf "gateStore.type is file but replicaCount is %v: a gate file belongs to one process. Use gateStore.type=configmap for several replicas." .Values.replicaCount) -}}
{{- end -}}
{{- end -}}
