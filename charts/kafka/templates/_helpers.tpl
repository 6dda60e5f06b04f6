{{/* vim: set filetype=mustache: */}}

{{/*
Chart name, overridable with nameOverride. Truncated to 63 characters (the limit
of a label value and of a DNS-1123 label).
*/}}
{{- define "kafka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name: fullnameOverride, else "<release>-<name>" (or just the release
name when it already contains the chart name). Truncated to 63 characters.
*/}}
{{- define "kafka.fullname" -}}
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
Name of the Kafka cluster: the fullname, checked. Strimzi names Services
"<cluster>-kafka-bootstrap" and "<cluster>-kafka-brokers" and the Entity Operator
"<cluster>-entity-operator"; these are DNS-1123 labels of at most 63 characters, so
the cluster name has at most 47. Fail here with the fix instead of leaving a Kafka
the operator cannot reconcile.
*/}}
{{- define "kafka.clusterName" -}}
{{- $name := include "kafka.fullname" . -}}
{{- if gt (len $name) 47 -}}
{{- fail (printf "kafka: the Kafka cluster name %q has %d characters; at most 47 fit (Strimzi's Service <name>-kafka-bootstrap must be a 63-character DNS label). Use a shorter release name or set fullnameOverride" $name (len $name)) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "kafka: the Kafka cluster name %q is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter); set fullnameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "kafka.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Value of the app.kubernetes.io/version label: the Kafka version deployed
(.Values.version) when it is a valid label value, else appVersion.
*/}}
{{- define "kafka.version" -}}
{{- $v := toString .Values.version -}}
{{- if not (regexMatch "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" $v) -}}
{{- $v = .Chart.AppVersion -}}
{{- end -}}
{{- $v -}}
{{- end -}}

{{/*
API version of the Strimzi resources: kafka.strimzi.io/v1 when the cluster serves it
(Strimzi >= 0.49; the only version of Strimzi 1.x), else kafka.strimzi.io/v1beta2
(Strimzi 0.45 - 0.48, and when rendering without a cluster). The rendered fields are
valid in both versions.
*/}}
{{- define "kafka.strimziApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "kafka.strimzi.io/v1/Kafka" -}}
kafka.strimzi.io/v1
{{- else if .Capabilities.APIVersions.Has "kafka.strimzi.io/v1" -}}
kafka.strimzi.io/v1
{{- else -}}
kafka.strimzi.io/v1beta2
{{- end -}}
{{- end -}}

{{/*
Selector labels: stable for the life of the release.
*/}}
{{- define "kafka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels of the Kafka and KafkaNodePool resources. Strimzi copies the labels of these
resources onto the pods, Services and Secrets it creates (except app.kubernetes.io/*
other than part-of), so helm.sh/chart is left out: its value changes with every chart
version and would roll every broker on a chart upgrade.
Usage: include "kafka.crLabels" (dict "ctx" $ "component" "kafka")
*/}}
{{- define "kafka.crLabels" -}}
{{ include "kafka.selectorLabels" .ctx }}
app.kubernetes.io/version: {{ include "kafka.version" .ctx | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: {{ .ctx.Values.partOf | default .ctx.Release.Name }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)
for the objects that create no pods (ConfigMap, PodMonitor, KafkaTopic, KafkaUser).
Usage: include "kafka.labels" (dict "ctx" $ "component" "kafka")
*/}}
{{- define "kafka.labels" -}}
helm.sh/chart: {{ include "kafka.chart" .ctx }}
{{ include "kafka.crLabels" . }}
{{- end -}}

{{/*
metadata.annotations (commonAnnotations plus extra), rendered only when there are some.
Usage: include "kafka.annotations" (dict "ctx" $ "extra" $map)
*/}}
{{- define "kafka.annotations" -}}
{{- $all := merge (dict) (.extra | default (dict)) (.ctx.Values.commonAnnotations | default (dict)) -}}
{{- if $all -}}
annotations:
  {{- toYaml $all | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
Name of the KafkaNodePool of a nodePools entry: its name, else its key. Checked:
pods are "<cluster>-<pool>-<id>" and must fit a 63-character DNS label.
Usage: include "kafka.poolName" (dict "ctx" $ "key" $key "pool" $pool)
*/}}
{{- define "kafka.poolName" -}}
{{- $name := .pool.name | default .key -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "kafka: node pool name %q is not a DNS-1123 label (lowercase letters, digits and '-')" $name) -}}
{{- end -}}
{{- $pod := printf "%s-%s-9999" (include "kafka.clusterName" .ctx) $name -}}
{{- if gt (len $pod) 63 -}}
{{- fail (printf "kafka: pod names %s-<id> would exceed 63 characters; shorten the release name (or fullnameOverride) or the node pool name" (trimSuffix "-9999" $pod)) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/*
Number of brokers: the replicas of the enabled node pools with the broker role.
*/}}
{{- define "kafka.brokerCount" -}}
{{- $n := 0 -}}
{{- range $key, $pool := .Values.nodePools -}}
{{- if and $pool.enabled (has "broker" $pool.roles) -}}
{{- $n = add $n $pool.replicas -}}
{{- end -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/*
Pod affinity of one node pool: .Values.affinity when set, else the
podAntiAffinityPreset against the other pods of the same pool, by hostname.
Usage: include "kafka.affinity" (dict "ctx" $ "pool" $poolName)
*/}}
{{- define "kafka.affinity" -}}
{{- $preset := .ctx.Values.podAntiAffinityPreset -}}
{{- if .ctx.Values.affinity -}}
{{- toYaml .ctx.Values.affinity -}}
{{- else if eq $preset "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          {{- include "kafka.poolPodLabels" . | nindent 10 }}
      topologyKey: kubernetes.io/hostname
{{- else if eq $preset "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        labelSelector:
          matchLabels:
            {{- include "kafka.poolPodLabels" . | nindent 12 }}
        topologyKey: kubernetes.io/hostname
{{- end -}}
{{- end -}}

{{/*
Labels Strimzi puts on the pods of one node pool.
Usage: include "kafka.poolPodLabels" (dict "ctx" $ "pool" $poolName)
*/}}
{{- define "kafka.poolPodLabels" -}}
strimzi.io/cluster: {{ include "kafka.clusterName" .ctx }}
strimzi.io/pool-name: {{ .pool }}
{{- end -}}

{{/*
topologySpreadConstraints of one node pool: an entry without labelSelector selects
the pods of that pool.
Usage: include "kafka.topologySpreadConstraints" (dict "ctx" $ "pool" $poolName)
*/}}
{{- define "kafka.topologySpreadConstraints" -}}
{{- $out := list -}}
{{- $podLabels := include "kafka.poolPodLabels" . | fromYaml -}}
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
template.pod of the Entity Operator, Kafka Exporter and Cruise Control: the pod
security context and tolerations (only what is set); empty when none.
*/}}
{{- define "kafka.operandPodTemplate" -}}
{{- $pod := dict -}}
{{- with .Values.podSecurityContext }}{{ $_ := set $pod "securityContext" . }}{{ end -}}
{{- with .Values.tolerations }}{{ $_ := set $pod "tolerations" . }}{{ end -}}
{{- if $pod -}}
{{- toYaml $pod -}}
{{- end -}}
{{- end -}}

{{/*
Name of the ConfigMap with the JMX Prometheus Exporter rules.
*/}}
{{- define "kafka.metricsConfigMapName" -}}
{{- printf "%s-kafka-metrics" (include "kafka.clusterName" .) -}}
{{- end -}}

{{/* "true" when a listener uses TLS. */}}
{{- define "kafka.anyTLSListener" -}}
{{- range .Values.listeners }}{{ if .tls }}true{{ end }}{{ end -}}
{{- end -}}

{{/* "true" when a listener has authentication. */}}
{{- define "kafka.anyAuthListener" -}}
{{- range .Values.listeners }}{{ if .authentication }}true{{ end }}{{ end -}}
{{- end -}}

{{/* "true" when a user has authorization rules. */}}
{{- define "kafka.anyUserAuthorization" -}}
{{- range .Values.users }}{{ if .authorization }}true{{ end }}{{ end -}}
{{- end -}}

{{/* Port of the first internal plain listener without authentication, else of the first listener. */}}
{{- define "kafka.plainPort" -}}
{{- $port := "" -}}
{{- range .Values.listeners -}}
{{- if and (not $port) (eq .type "internal") (not .tls) (not .authentication) -}}{{- $port = toString (int .port) -}}{{- end -}}
{{- end -}}
{{- if not $port -}}{{- $port = toString (int (first .Values.listeners).port) -}}{{- end -}}
{{- $port -}}
{{- end -}}
