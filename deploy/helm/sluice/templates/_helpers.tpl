{{/* Chart name, overridable. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name: release-name, or the release name alone when it already holds the chart's. */}}
{{- define "sluice.fullname" -}}
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

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "sluice.policyConfigMap" -}}
{{- default (include "sluice.fullname" .) .Values.policy.existingConfigMap }}
{{- end }}

{{/*
Seconds in a Sluice duration written as one number and unit (500ms, 20s, 2m, 1h), or ""
when it is written otherwise (humantime also takes forms like "1m 30s").
*/}}
{{- define "sluice.durationSeconds" -}}
{{- $d := toString . | trim }}
{{- if regexMatch "^[0-9]+ms$" $d }}
{{- div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if regexMatch "^[0-9]+s$" $d }}
{{- trimSuffix "s" $d | atoi }}
{{- else if regexMatch "^[0-9]+m$" $d }}
{{- mul (trimSuffix "m" $d | atoi) 60 }}
{{- else if regexMatch "^[0-9]+h$" $d }}
{{- mul (trimSuffix "h" $d | atoi) 3600 }}
{{- end }}
{{- end }}

{{/*
Fails the render when the inline policy and the chart disagree: the listeners must be
0.0.0.0 on the container ports, and the grace period must cover the preStop sleep plus
server.shutdown_grace (Sluice's default is 10s). Skipped for an existing ConfigMap, which
the chart cannot see.
*/}}
{{- define "sluice.checkPolicy" -}}
{{- if not .Values.policy.existingConfigMap }}
{{- $policy := .Values.policy.content | fromYaml }}
{{- if hasKey $policy "Error" }}
{{- fail (printf "policy.content is not valid YAML: %s" $policy.Error) }}
{{- end }}
{{- $server := default dict $policy.server }}
{{- $listen := printf "0.0.0.0:%v" .Values.ports.http }}
{{- $admin := printf "0.0.0.0:%v" .Values.ports.admin }}
{{- if ne (toString $server.listen) $listen }}
{{- fail (printf "policy.content: server.listen must be %s (ports.http), found %v" $listen (default "the default 127.0.0.1:8080" $server.listen)) }}
{{- end }}
{{- if ne (toString $server.admin_listen) $admin }}
{{- fail (printf "policy.content: server.admin_listen must be %s (ports.admin) for the probes and Prometheus, found %v" $admin (default "the default 127.0.0.1:9464" $server.admin_listen)) }}
{{- end }}
{{- $grace := include "sluice.durationSeconds" (default "10s" $server.shutdown_grace) }}
{{- if $grace }}
{{- $need := add (atoi $grace) .Values.preStopSleepSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $need) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds (%v) + server.shutdown_grace (%vs)" .Values.terminationGracePeriodSeconds .Values.preStopSleepSeconds $grace) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
