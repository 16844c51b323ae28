{{/* Names and labels shared by every template. */}}

{{- define "psi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The objects' name: the release name when it already holds the chart's name (so `helm install
pull-secret-injector` names everything pull-secret-injector, as the kustomize base does),
release-chart otherwise. Cut to 52 characters: "-serving-cert" must still fit in 63.
*/}}
{{- define "psi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "psi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "psi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "psi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "psi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "psi.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "psi.configMapName" -}}
{{- default (include "psi.fullname" .) .Values.config.existingConfigMap -}}
{{- end -}}

{{/* The Secret the serving certificate is in, for every mode but selfSigned (which names its own). */}}
{{- define "psi.tlsSecretName" -}}
{{- $mode := .Values.certificate.mode -}}
{{- if eq $mode "selfSigned" -}}
{{- printf "%s-tls" (include "psi.fullname" .) -}}
{{- else if eq $mode "certManager" -}}
{{- printf "%s-cert" (include "psi.fullname" .) -}}
{{- else if eq $mode "openshiftServiceCA" -}}
{{- printf "%s-serving-cert" (include "psi.fullname" .) -}}
{{- else -}}
{{- required "certificate.existingSecret.name is required with certificate.mode=existingSecret: a kubernetes.io/tls Secret in the release namespace" .Values.certificate.existingSecret.name -}}
{{- end -}}
{{- end -}}

{{/*
The parsed config.yaml, or an empty map with config.existingConfigMap. Fails with the YAML
error when configYaml does not parse, rather than installing a config the injector refuses.
*/}}
{{- define "psi.config" -}}
{{- if .Values.config.existingConfigMap -}}
{{- dict | toJson -}}
{{- else -}}
{{- $config := fromYaml .Values.config.configYaml -}}
{{- if hasKey $config "Error" -}}
{{- fail (printf "config.configYaml is not YAML: %s" (get $config "Error")) -}}
{{- end -}}
{{- $config | toJson -}}
{{- end -}}
{{- end -}}

{{/* "true" when the delete grant prune needs is given: rbac.prune, else the config's prune. */}}
{{- define "psi.prune" -}}
{{- if kindIs "bool" .Values.rbac.prune -}}
{{- .Values.rbac.prune -}}
{{- else -}}
{{- $config := include "psi.config" . | fromJson -}}
{{- eq (get $config "prune" | toString) "true" -}}
{{- end -}}
{{- end -}}
