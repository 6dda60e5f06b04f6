{{/* vim: set filetype=mustache: */}}

{{/*
Chart name, overridable with nameOverride. Truncated to 63 characters (the
limit of a Kubernetes label value and of a DNS-1123 label).
*/}}
{{- define "postgresql.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name: fullnameOverride, else "<release>-<name>" (or just the
release name when it already contains the chart name). Truncated to 63
characters because some Kubernetes name fields are limited to that (DNS-1123).
*/}}
{{- define "postgresql.fullname" -}}
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
Name of the CloudNativePG Cluster. CNPG's admission webhook refuses a Cluster
whose name is not a DNS-1035 label (lowercase, starts with a letter) or is longer
than 50 characters (the operator derives Job, Pod and Service names from it), so
the fullname is cut to 50 and checked here instead of failing at apply time.
Every other object name (Services <cluster>-rw/-ro/-r, Secret <cluster>-app,
Pooler, ScheduledBackup, PodMonitor) is derived from this one.
*/}}
{{- define "postgresql.clusterName" -}}
{{- $name := include "postgresql.fullname" . | trunc 50 | trimSuffix "-" -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "postgresql: the Cluster name %q is not a valid DNS-1035 label (lowercase letters, digits and '-', starting with a letter); set fullnameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "postgresql.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The operand image: imageName when set, else "<image.repository>:<image.tag>".
*/}}
{{- define "postgresql.image" -}}
{{- if .Values.imageName -}}
{{- .Values.imageName -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (toString (.Values.image.tag | default .Chart.AppVersion)) -}}
{{- end -}}
{{- end -}}

{{/*
Value of the app.kubernetes.io/version label: the PostgreSQL image tag actually
deployed (from imageName or image.tag) when it is a valid label value, else the
chart's appVersion.
*/}}
{{- define "postgresql.version" -}}
{{- $v := "" -}}
{{- if .Values.imageName -}}
{{- if not (contains "@" .Values.imageName) -}}
{{- $parts := splitList ":" .Values.imageName -}}
{{- if gt (len $parts) 1 -}}{{- $v = last $parts -}}{{- end -}}
{{- end -}}
{{- else -}}
{{- $v = toString (.Values.image.tag | default "") -}}
{{- end -}}
{{- if not (regexMatch "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" $v) -}}
{{- $v = .Chart.AppVersion -}}
{{- end -}}
{{- $v -}}
{{- end -}}

{{/*
Selector labels: stable across upgrades, used to select this release's objects.
*/}}
{{- define "postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgresql.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)
for the objects this chart creates, plus commonLabels.
*/}}
{{- define "postgresql.labels" -}}
helm.sh/chart: {{ include "postgresql.chart" . }}
{{ include "postgresql.selectorLabels" . }}
app.kubernetes.io/version: {{ include "postgresql.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ .Values.partOf | default .Release.Name }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Labels the operator copies onto every object it creates for the Cluster (Pods,
PVCs, Services, Secrets, PodDisruptionBudgets) through spec.inheritedMetadata.
No managed-by/helm.sh/chart here: those objects are managed by CNPG, not Helm.
*/}}
{{- define "postgresql.inheritedLabels" -}}
{{ include "postgresql.selectorLabels" . }}
app.kubernetes.io/version: {{ include "postgresql.version" . | quote }}
app.kubernetes.io/part-of: {{ .Values.partOf | default .Release.Name }}
app.kubernetes.io/component: database
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata.annotations for the objects this chart creates (commonAnnotations),
rendered only when there are some. Usage: include "postgresql.annotations" (dict "ctx" $ "extra" $map)
*/}}
{{- define "postgresql.annotations" -}}
{{- $all := merge (dict) (.extra | default (dict)) (.ctx.Values.commonAnnotations | default (dict)) -}}
{{- if $all }}
annotations:
  {{- toYaml $all | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Name of the PgBouncer Pooler (and of its Deployment and Service):
"<cluster>-pooler-<type>". CNPG refuses a Pooler named like its Cluster.
*/}}
{{- define "postgresql.poolerName" -}}
{{- printf "%s-pooler-%s" (include "postgresql.clusterName" .) .Values.pooler.type -}}
{{- end -}}

{{/*
Name of the Secret with the application credentials: bootstrap.initdb.secret when
set (provided by you), else the "<cluster>-app" Secret CNPG generates.
*/}}
{{- define "postgresql.appSecretName" -}}
{{- if .Values.bootstrap.initdb.secret -}}
{{- .Values.bootstrap.initdb.secret -}}
{{- else -}}
{{- printf "%s-app" (include "postgresql.clusterName" .) -}}
{{- end -}}
{{- end -}}

{{/*
Barman destination path: backup.destinationPath, with "s3://" prepended when the
claim gave a bare bucket name ("my-backups" -> "s3://my-backups").
*/}}
{{- define "postgresql.backupDestinationPath" -}}
{{- $p := .Values.backup.destinationPath | trim -}}
{{- if hasPrefix "s3://" $p -}}
{{- $p -}}
{{- else -}}
{{- printf "s3://%s" $p -}}
{{- end -}}
{{- end -}}

{{/*
Whether backups are on: backup.enabled, which requires a destinationPath.
*/}}
{{- define "postgresql.backupEnabled" -}}
{{- if .Values.backup.enabled -}}
{{- if not (.Values.backup.destinationPath | trim) -}}
{{- fail "postgresql: backup.enabled is true but backup.destinationPath is empty; set the bucket URL (the claim's backup.s3Bucket, e.g. s3://my-backups) or set backup.enabled=false" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}
