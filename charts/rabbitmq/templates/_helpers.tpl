{{/* vim: set filetype=mustache: */}}

{{/*
Chart name, overridable with nameOverride. Truncated to 63 characters (the limit
of a label value and of a DNS-1123 label).
*/}}
{{- define "rabbitmq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name: fullnameOverride, else "<release>-<name>" (or just the release
name when it already contains the chart name). Truncated to 63 characters.
*/}}
{{- define "rabbitmq.fullname" -}}
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

{{/*
Name of the RabbitmqCluster: the fullname, checked. The operator names its
StatefulSet "<name>-server"; a StatefulSet's pods carry the label
controller-revision-hash=<statefulset>-<10 characters>, and a label value has at most
63 characters, so a name longer than 45 characters gives a cluster whose pods can
never be created. Fail here instead, with the fix.
*/}}
{{- define "rabbitmq.clusterName" -}}
{{- $name := include "rabbitmq.fullname" . -}}
{{- if gt (len $name) 45 -}}
{{- fail (printf "rabbitmq: the RabbitmqCluster name %q has %d characters; at most 45 fit (the operator's StatefulSet <name>-server needs room for its pods' revision label). Use a shorter release name or set fullnameOverride" $name (len $name)) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "rabbitmq: the RabbitmqCluster name %q is not a DNS-1123 label (lowercase letters, digits and '-'); set fullnameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "rabbitmq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Value of the app.kubernetes.io/version label: the RabbitMQ version actually deployed
(image.tag without a "-management" suffix) when that is a valid label value, else appVersion.
*/}}
{{- define "rabbitmq.version" -}}
{{- $v := toString .Values.image.tag | trimSuffix "-management" -}}
{{- if not (regexMatch "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" $v) -}}
{{- $v = .Chart.AppVersion -}}
{{- end -}}
{{- $v -}}
{{- end -}}

{{/*
Selector labels: stable for the life of the release.
*/}}
{{- define "rabbitmq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rabbitmq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)
for the objects Helm manages directly (PodDisruptionBudget, ServiceMonitor), plus commonLabels.
*/}}
{{- define "rabbitmq.labels" -}}
helm.sh/chart: {{ include "rabbitmq.chart" . }}
{{ include "rabbitmq.crLabels" . }}
{{- end -}}

{{/*
Labels of the RabbitmqCluster. The operator copies the labels of a RabbitmqCluster
onto everything it creates (StatefulSet, pod template, Services, Secrets) except those
starting with "app.kubernetes.io", so helm.sh/chart is left out here: its value changes
with every chart version and would restart all RabbitMQ pods on a chart upgrade.
*/}}
{{- define "rabbitmq.crLabels" -}}
{{ include "rabbitmq.selectorLabels" . }}
app.kubernetes.io/version: {{ include "rabbitmq.version" . | quote }}
app.kubernetes.io/component: message-broker
app.kubernetes.io/part-of: {{ .Values.partOf | default .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Labels the operator puts on the RabbitMQ pods (app.kubernetes.io/name is the cluster
name): used by the anti-affinity, topology spread and PodDisruptionBudget selectors.
*/}}
{{- define "rabbitmq.podSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rabbitmq.clusterName" . }}
{{- end -}}

{{/*
metadata.annotations (commonAnnotations plus extra), rendered only when there are some.
Usage: include "rabbitmq.annotations" (dict "ctx" $ "extra" $map)
*/}}
{{- define "rabbitmq.annotations" -}}
{{- $all := merge (dict) (.extra | default (dict)) (.ctx.Values.commonAnnotations | default (dict)) -}}
{{- if $all -}}
annotations:
  {{- toYaml $all | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
spec.affinity: .Values.affinity when set, else the podAntiAffinityPreset by hostname.
*/}}
{{- define "rabbitmq.affinity" -}}
{{- $preset := .Values.podAntiAffinityPreset -}}
{{- if .Values.affinity -}}
{{- toYaml .Values.affinity -}}
{{- else if eq $preset "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          {{- include "rabbitmq.podSelectorLabels" . | nindent 10 }}
      topologyKey: kubernetes.io/hostname
{{- else if eq $preset "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        labelSelector:
          matchLabels:
            {{- include "rabbitmq.podSelectorLabels" . | nindent 12 }}
        topologyKey: kubernetes.io/hostname
{{- end -}}
{{- end -}}

{{/*
topologySpreadConstraints: an entry without labelSelector selects this cluster's pods.
*/}}
{{- define "rabbitmq.topologySpreadConstraints" -}}
{{- $out := list -}}
{{- $podLabels := include "rabbitmq.podSelectorLabels" . | fromYaml -}}
{{- range .Values.topologySpreadConstraints -}}
{{- $c := deepCopy . -}}
{{- if not $c.labelSelector -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $podLabels) -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- if $out -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}

{{/*
API version for PodDisruptionBudgets: policy/v1 (Kubernetes >= 1.21), else policy/v1beta1.
*/}}
{{- define "rabbitmq.pdbApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" -}}
policy/v1
{{- else if .Capabilities.APIVersions.Has "policy/v1beta1/PodDisruptionBudget" -}}
policy/v1beta1
{{- else -}}
policy/v1
{{- end -}}
{{- end -}}
