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

{{/*
The ServiceAccount the pod runs as: Flagger's serviceAccountName (an existing account) wins, then
serviceAccount.name, else the full name (created) or the namespace's default account.
*/}}
{{- define "veer-loadtester.serviceAccountName" -}}
{{- if .Values.serviceAccountName -}}
{{- .Values.serviceAccountName -}}
{{- else if .Values.serviceAccount.create -}}
{{- default (include "veer-loadtester.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "veer-loadtester.createServiceAccount" -}}
{{- if and .Values.serviceAccount.create (not .Values.serviceAccountName) -}}true{{- end -}}
{{- end -}}

{{/* Whether the chart binds any RBAC to the ServiceAccount (see rbac.yaml). */}}
{{- define "veer-loadtester.bindsRbac" -}}
{{- if or (eq .Values.gateStore.type "configmap") .Values.tokenReview.allowedServiceAccounts (and .Values.rbac.create .Values.rbac.rules) -}}true{{- end -}}
{{- end -}}

{{/* Flagger's log levels include warning, fatal and panic; tracing knows warn and error. */}}
{{- define "veer-loadtester.logLevel" -}}
{{- $level := toString .Values.logLevel -}}
{{- if eq $level "warning" -}}warn
{{- else if has $level (list "fatal" "panic") -}}error
{{- else -}}{{ $level }}
{{- end -}}
{{- end -}}

{{/*
A security context in either shape, given the value (securityContext or podSecurityContext):
Flagger's {enabled, context}, and fields given directly, which apply over context. Renders nothing
when enabled is false or nothing is set.
*/}}
{{- define "veer-loadtester.securityContext" -}}
{{- $value := . | default dict -}}
{{- if ne (toString $value.enabled) "false" -}}
{{- $context := mergeOverwrite (deepCopy ($value.context | default dict)) (omit $value "enabled" "context") -}}
{{- with $context -}}
{{- toYaml . -}}
{{- end -}}
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
{{- if and .Values.serviceAccountName .Values.serviceAccount.name (ne .Values.serviceAccountName .Values.serviceAccount.name) -}}
{{- fail (printf "serviceAccountName is %q but serviceAccount.name is %q: name the ServiceAccount to run as in one of them." .Values.serviceAccountName .Values.serviceAccount.name) -}}
{{- end -}}
{{- if and (eq (include "veer-loadtester.serviceAccountName" .) "default") (include "veer-loadtester.bindsRbac" .) -}}
{{- fail "serviceAccount.create is false and no ServiceAccount is named: the chart's RBAC (the gate ConfigMap, TokenReviews, rbac.rules) would be granted to every pod of the namespace's default account. Name an existing account in serviceAccountName (or serviceAccount.name), or set serviceAccount.create=true." -}}
{{- end -}}
{{- range $key := list "securityContext" "podSecurityContext" -}}
{{- $value := index $.Values $key | default dict -}}
{{- $direct := omit $value "enabled" "context" -}}
{{- if and (eq (toString $value.enabled) "false") $direct -}}
{{- fail (printf "%s.enabled is false but %s also sets %s, which would be ignored. Remove them, or set %s.enabled=true." $key $key (keys $direct | sortAlpha | join ", ") $key) -}}
{{- end -}}
{{- end -}}
{{- range .Values.volumes -}}
{{- if has .name (list "tmp" "gates" "token") -}}
{{- fail (printf "volumes: a volume is named %q, a name the chart uses for its own volumes (tmp, gates, token). Give it another name (and its volumeMounts too)." .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
