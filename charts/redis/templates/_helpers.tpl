{{/* vim: set filetype=mustache: */}}

{{/*
Chart name, overridable with nameOverride. Truncated to 63 characters (the limit
of a label value and of a DNS-1123 label).
*/}}
{{- define "redis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name: fullnameOverride, else "<release>-<name>" (or just the release
name when it already contains the chart name). Truncated to 63 characters.
It names the Redis / RedisReplication / RedisSentinel, so also the operator's
StatefulSets (<fullname>, <fullname>-sentinel) and Services (<fullname>,
<fullname>-master, <fullname>-replica, <fullname>-headless, <fullname>-sentinel).
*/}}
{{- define "redis.fullname" -}}
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
Name of the Redis / RedisReplication / RedisSentinel: the fullname, checked. The
operator names its StatefulSets <name> and <name>-sentinel; a StatefulSet's pods carry
the label controller-revision-hash=<statefulset>-<10 characters>, at most 63
characters, so the name has at most 52 characters (43 with Sentinel). Fail here with
the fix instead of leaving StatefulSets whose pods can never be created.
*/}}
{{- define "redis.crName" -}}
{{- $name := include "redis.fullname" . -}}
{{- $max := ternary 43 52 (and (eq .Values.mode "replication") .Values.sentinel.enabled) -}}
{{- if gt (len $name) $max -}}
{{- fail (printf "redis: the name %q has %d characters; at most %d fit (the operator's StatefulSet names need room for their pods' revision label). Use a shorter release name or set fullnameOverride" $name (len $name) $max) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "redis: the name %q is not a DNS-1123 label (lowercase letters, digits and '-'); set fullnameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "redis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Value of the app.kubernetes.io/version label: the Redis version actually deployed
(image.tag without its "v" prefix) when that is a valid label value, else appVersion.
*/}}
{{- define "redis.version" -}}
{{- $v := toString .Values.image.tag | trimPrefix "v" -}}
{{- if not (regexMatch "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" $v) -}}
{{- $v = .Chart.AppVersion -}}
{{- end -}}
{{- $v -}}
{{- end -}}

{{/*
Selector labels: stable for the life of the release.
*/}}
{{- define "redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)
for the objects Helm manages directly (ConfigMap, ServiceMonitor), plus commonLabels.
Usage: include "redis.labels" (dict "ctx" $ "component" "redis")
*/}}
{{- define "redis.labels" -}}
helm.sh/chart: {{ include "redis.chart" .ctx }}
{{ include "redis.selectorLabels" .ctx }}
app.kubernetes.io/version: {{ include "redis.version" .ctx | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: {{ .ctx.Values.partOf | default .ctx.Release.Name }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Labels of the operator's custom resources (Redis, RedisReplication, RedisSentinel).
The OT operator copies ALL labels of these resources into the selector of the
StatefulSet it creates, and a StatefulSet selector is immutable: a label whose value
changes on a chart upgrade (helm.sh/chart, app.kubernetes.io/version) or on a values
change (app.kubernetes.io/part-of) would leave the operator unable to update the
StatefulSet. So only the labels that never change for a release are set here; the
pods, Services and PVCs the operator creates inherit them.
Usage: include "redis.crLabels" (dict "ctx" $ "component" "redis")
*/}}
{{- define "redis.crLabels" -}}
{{ include "redis.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Labels of the pods of one component, as the operator sets them (the CR's labels):
used in anti-affinity and topology spread selectors.
Usage: include "redis.podLabels" (dict "ctx" $ "component" "redis")
*/}}
{{- define "redis.podLabels" -}}
{{ include "redis.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
metadata.annotations (commonAnnotations plus extra), rendered only when there are some.
Usage: include "redis.annotations" (dict "ctx" $ "extra" $map)
*/}}
{{- define "redis.annotations" -}}
{{- $all := merge (dict) (.extra | default (dict)) (.ctx.Values.commonAnnotations | default (dict)) -}}
{{- if $all -}}
annotations:
  {{- toYaml $all | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
"<repository>:<tag>" of an image map.
*/}}
{{- define "redis.imageRef" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/*
Name of the ConfigMap with the extra redis.conf lines (redisConfig.additionalRedisConfig).
*/}}
{{- define "redis.configMapName" -}}
{{- printf "%s-config" (include "redis.crName" .) -}}
{{- end -}}

{{/*
Pod affinity of one component: .Values.affinity for the Redis pods when set, else the
podAntiAffinityPreset ("soft"/"hard") against the other pods of the same component,
by hostname. Empty when there is none.
Usage: include "redis.affinity" (dict "ctx" $ "component" "redis" "useAffinity" true)
*/}}
{{- define "redis.affinity" -}}
{{- $preset := .ctx.Values.podAntiAffinityPreset -}}
{{- if and .useAffinity .ctx.Values.affinity -}}
{{- toYaml .ctx.Values.affinity -}}
{{- else if eq $preset "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          {{- include "redis.podLabels" . | nindent 10 }}
      topologyKey: kubernetes.io/hostname
{{- else if eq $preset "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        labelSelector:
          matchLabels:
            {{- include "redis.podLabels" . | nindent 12 }}
        topologyKey: kubernetes.io/hostname
{{- end -}}
{{- end -}}

{{/*
topologySpreadConstraints of one component: an entry without labelSelector selects
the pods of that component.
Usage: include "redis.topologySpreadConstraints" (dict "ctx" $ "component" "redis")
*/}}
{{- define "redis.topologySpreadConstraints" -}}
{{- $out := list -}}
{{- $podLabels := include "redis.podLabels" . | fromYaml -}}
{{- range .ctx.Values.topologySpreadConstraints -}}
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
kubernetesConfig.redisSecret, when password auth is on.
*/}}
{{- define "redis.redisSecret" -}}
{{- if .Values.auth.enabled -}}
redisSecret:
  name: {{ required "redis: auth.enabled is true, so auth.existingSecret must name the Secret that holds the password" .Values.auth.existingSecret | quote }}
  key: {{ .Values.auth.existingSecretKey | default "password" | quote }}
{{- end -}}
{{- end -}}

{{/*
Fields shared by the Redis and RedisReplication specs: Redis container, storage,
config, exporter, security, probes, TLS and scheduling.
*/}}
{{- define "redis.commonSpec" -}}
kubernetesConfig:
  image: {{ include "redis.imageRef" .Values.image | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "redis.redisSecret" . }}
  {{- . | nindent 2 }}
  {{- end }}
{{- if .Values.config }}
redisConfig:
  additionalRedisConfig: {{ include "redis.configMapName" . }}
{{- end }}
{{- if .Values.storage.enabled }}
storage:
  keepAfterDelete: {{ .Values.storage.keepAfterDelete }}
  volumeClaimTemplate:
    spec:
      {{- with .Values.storage.storageClass }}
      storageClassName: {{ . | quote }}
      {{- end }}
      accessModes:
        {{- toYaml .Values.storage.accessModes | nindent 8 }}
      resources:
        requests:
          storage: {{ .Values.storage.size | quote }}
{{- end }}
{{- if .Values.exporter.enabled }}
redisExporter:
  enabled: true
  image: {{ include "redis.imageRef" .Values.exporter.image | quote }}
  imagePullPolicy: {{ .Values.exporter.image.pullPolicy }}
  {{- with .Values.exporter.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.exporter.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- with .Values.podSecurityContext }}
podSecurityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.livenessProbe }}
livenessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.readinessProbe }}
readinessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "redis.tls" . }}
{{ . }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "redis.affinity" (dict "ctx" . "component" "redis" "useAffinity" true) }}
affinity:
  {{- . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
spec.TLS, when tls.enabled (cert-manager Secret layout: ca.crt, tls.crt, tls.key).
*/}}
{{- define "redis.tls" -}}
{{- if .Values.tls.enabled -}}
TLS:
  ca: ca.crt
  cert: tls.crt
  key: tls.key
  secret:
    secretName: {{ required "redis: tls.enabled is true, so tls.secretName must name a Secret with tls.crt, tls.key and ca.crt" .Values.tls.secretName | quote }}
{{- end -}}
{{- end -}}
