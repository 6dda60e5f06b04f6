{{/* vim: set filetype=mustache: */}}

{{/*
Chart name, overridable with nameOverride. Truncated to 63 characters (the
limit of a Kubernetes label value and of a DNS-1123 label).
*/}}
{{- define "mongodb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name: fullnameOverride, else "<release>-<name>" (or just the
release name when it already contains the chart name). Truncated to 63
characters because some Kubernetes name fields are limited to that (DNS-1123).
*/}}
{{- define "mongodb.fullname" -}}
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
Name of the MongoDBCommunity resource. The operator names the StatefulSet after
it (and "<name>-arb" for arbiters), the headless Service "<name>-svc" and the
replica set itself. A StatefulSet's pods carry the label
controller-revision-hash=<statefulset>-<hash of up to 10 chars>, which must fit
in 63 characters, so the name is cut to 48 (63 - "-arb" - "-" - 10), and it must
be a DNS-1035 label because it names a Service.
*/}}
{{- define "mongodb.resourceName" -}}
{{- $name := include "mongodb.fullname" . | trunc 48 | trimSuffix "-" -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "mongodb: the resource name %q is not a valid DNS-1035 label (lowercase letters, digits and '-', starting with a letter); set fullnameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/*
The headless Service the operator creates for the members (also the value of
the "app" label on the member pods, which the operator selects on).
*/}}
{{- define "mongodb.serviceName" -}}
{{- printf "%s-svc" (include "mongodb.resourceName" .) -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "mongodb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Value of the app.kubernetes.io/version label: the MongoDB version deployed when
it is a valid label value, else the chart's appVersion.
*/}}
{{- define "mongodb.version" -}}
{{- $v := toString (.Values.version | default "") -}}
{{- if not (regexMatch "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" $v) -}}
{{- $v = .Chart.AppVersion -}}
{{- end -}}
{{- $v -}}
{{- end -}}

{{/*
Selector labels: stable across upgrades, used to select this release's objects.
*/}}
{{- define "mongodb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mongodb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)
for the objects this chart creates, plus commonLabels.
*/}}
{{- define "mongodb.labels" -}}
helm.sh/chart: {{ include "mongodb.chart" . }}
{{ include "mongodb.selectorLabels" . }}
app.kubernetes.io/version: {{ include "mongodb.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ .Values.partOf | default .Release.Name }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Labels for the StatefulSet and member pods the operator creates (merged into its
own through spec.statefulSet). No managed-by/helm.sh/chart: the operator owns them.
*/}}
{{- define "mongodb.podLabels" -}}
{{ include "mongodb.selectorLabels" . }}
app.kubernetes.io/version: {{ include "mongodb.version" . | quote }}
app.kubernetes.io/part-of: {{ .Values.partOf | default .Release.Name }}
app.kubernetes.io/component: database
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata.annotations (commonAnnotations), rendered only when there are some.
*/}}
{{- define "mongodb.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod label selector of the member pods, as the operator sets it: app=<name>-svc.
*/}}
{{- define "mongodb.memberSelector" -}}
app: {{ include "mongodb.serviceName" . }}
{{- end -}}

{{/*
A name made valid the way the operator does it (normalizeName in
api/v1/mongodbcommunity_types.go): kept when it is a DNS-1123 subdomain, else
lowercased, runs of other characters replaced by "-", "-" trimmed, cut to 253.
*/}}
{{- define "mongodb.normalizeName" -}}
{{- if regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" . -}}
{{- . -}}
{{- else -}}
{{- $n := regexReplaceAll "[^a-z0-9-]+" (lower .) "-" -}}
{{- $n = regexReplaceAll "-+" $n "-" -}}
{{- $n | trimAll "-" | trunc 253 -}}
{{- end -}}
{{- end -}}

{{/*
SCRAM credentials Secret prefix of a user: scramCredentialsSecretName, else
"<resource>-<user>" (unique per release, so two releases in one namespace do not
share it). The operator appends "-scram-credentials".
Usage: include "mongodb.scramSecretName" (dict "ctx" $ "user" $user)
*/}}
{{- define "mongodb.scramSecretName" -}}
{{- if .user.scramCredentialsSecretName -}}
{{- .user.scramCredentialsSecretName -}}
{{- else -}}
{{- include "mongodb.normalizeName" (printf "%s-%s" (include "mongodb.resourceName" .ctx) .user.name) | trunc 200 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Connection string Secret of a user, as the operator names it:
connectionStringSecretName, else normalizeName("<resource>-<db>-<user>").
Usage: include "mongodb.connectionSecretName" (dict "ctx" $ "user" $user)
*/}}
{{- define "mongodb.connectionSecretName" -}}
{{- if .user.connectionStringSecretName -}}
{{- .user.connectionStringSecretName -}}
{{- else -}}
{{- include "mongodb.normalizeName" (printf "%s-%s-%s" (include "mongodb.resourceName" .ctx) (.user.db | default "admin") .user.name) -}}
{{- end -}}
{{- end -}}

{{/*
Comma-separated member host:port list (for NOTES).
*/}}
{{- define "mongodb.hosts" -}}
{{- $name := include "mongodb.resourceName" . -}}
{{- $svc := include "mongodb.serviceName" . -}}
{{- $hosts := list -}}
{{- range $i := until (int .Values.members) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s.%s.svc.cluster.local:27017" $name $i $svc $.Release.Namespace) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}
