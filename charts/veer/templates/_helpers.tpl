{{/* Chart name, overridable. */}}
{{- define "veer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Flagger's values files refer to `{{ template "flagger.name" . }}` in their affinity (rendered with
tpl); answer it with this chart's name so that such a file keeps working.
*/}}
{{- define "flagger.name" -}}
{{- include "veer.name" . -}}
{{- end -}}

{{/* Full name: the release name when it already contains the chart name (release "veer" -> "veer"). */}}
{{- define "veer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "veer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "veer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "veer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "veer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "veer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "veer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Lease the controller holds (its name is fixed in the controller: docs/flags.md). */}}
{{- define "veer.leaseName" -}}veer-leader-election{{- end -}}

{{/* Flagger's log levels include "warning"; tracing calls it "warn". */}}
{{- define "veer.logLevel" -}}
{{- if eq .Values.logLevel "warning" -}}warn{{- else -}}{{ .Values.logLevel }}{{- end -}}
{{- end -}}

{{/*
Settings the schema cannot express (they span several keys) or that name Flagger features Veer does not
have. Each message names the value and what to do instead. Included by deployment.yaml.
*/}}
{{- define "veer.validate" -}}
{{- $le := .Values.leaderElection -}}
{{- if and (gt ($le.replicaCount | int) 1) (not $le.enabled) -}}
{{- fail (printf "leaderElection.replicaCount is %v but leaderElection.enabled is false: every replica would drive every Canary. Set leaderElection.enabled=true to run more than one replica." $le.replicaCount) -}}
{{- end -}}
{{- if and .Values.prometheus .Values.prometheus.install -}}
{{- fail "prometheus.install: this chart does not install a Prometheus; point metricsServer at an existing one." -}}
{{- end -}}
{{- if and .Values.controlplane .Values.controlplane.kubeconfig .Values.controlplane.kubeconfig.secretName -}}
{{- fail "controlplane.kubeconfig.secretName: a separate service-mesh cluster (Flagger's -kubeconfig-service-mesh) is not supported by Veer yet; remove it." -}}
{{- end -}}
{{- if and .Values.linkerdAuthPolicy .Values.linkerdAuthPolicy.create -}}
{{- fail "linkerdAuthPolicy.create: Veer does not route Linkerd; remove it." -}}
{{- end -}}
{{- if .Values.rbac.pspEnabled -}}
{{- fail "rbac.pspEnabled: PodSecurityPolicy no longer exists (removed in Kubernetes 1.25); remove it." -}}
{{- end -}}
{{- if and .Values.slack.proxy .Values.slack.proxyUrl (ne .Values.slack.proxy .Values.slack.proxyUrl) -}}
{{- fail "slack.proxy and slack.proxyUrl are both set and differ; set only one (they mean the same)." -}}
{{- end -}}
{{- if and .Values.msteams.proxy .Values.msteams.proxyUrl (ne .Values.msteams.proxy .Values.msteams.proxyUrl) -}}
{{- fail "msteams.proxy and msteams.proxyUrl are both set and differ; set only one (they mean the same)." -}}
{{- end -}}
{{- if and .Values.loadtesterAuth.enabled (not .Values.loadtesterAuth.hosts) -}}
{{- fail "loadtesterAuth.enabled is true but loadtesterAuth.hosts is empty: the token would be sent nowhere. List the load tester hosts used in the Canaries' webhook URLs, e.g. flagger-loadtester.test." -}}
{{- end -}}
{{- if and .Values.loadtesterAuth.hosts (not .Values.loadtesterAuth.enabled) -}}
{{- fail "loadtesterAuth.hosts is set but loadtesterAuth.enabled is false: no token would be sent. Set loadtesterAuth.enabled=true, or remove loadtesterAuth.hosts." -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) .Values.rbac.create -}}
{{- fail "serviceAccount.create is false and serviceAccount.name is empty: the RBAC rules would be bound to the namespace's default account. Name the account to use in serviceAccount.name." -}}
{{- end -}}
{{- end -}}
