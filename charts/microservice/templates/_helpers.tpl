{{/*
Chart name, or nameOverride. Truncated to 63 characters (the DNS-1123 label limit).
*/}}
{{- define "microservice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name used for every object, truncated to 63 characters:
- fullnameOverride when set;
- else the release name (claimd names the release after the application, so objects are
  named like the application), with "-<nameOverride>" appended when nameOverride is set and
  the release name does not already contain it.
*/}}
{{- define "microservice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if and .Values.nameOverride (not (contains .Values.nameOverride .Release.Name)) -}}
{{- printf "%s-%s" .Release.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Chart label value: "<name>-<version>" ("+" is not allowed in label values).
*/}}
{{- define "microservice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Application version for the app.kubernetes.io/version label: the image tag (every
application shares this chart, so the image tag is what identifies its version), else the
chart appVersion. Made a valid label value (at most 63 characters, alphanumeric at both ends).
*/}}
{{- define "microservice.version" -}}
{{- $version := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- regexReplaceAll "[^A-Za-z0-9_.-]" $version "_" | trunc 63 | trimAll "-_." -}}
{{- end -}}

{{/*
Selector labels: stable for the life of the release (Deployment selectors are immutable).
*/}}
{{- define "microservice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "microservice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "microservice.labels" -}}
helm.sh/chart: {{ include "microservice.chart" . }}
{{ include "microservice.selectorLabels" . }}
{{- with include "microservice.version" . }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
ServiceAccount the pods run as: serviceAccount.name, else the full name when the chart
creates the account, else "default".
*/}}
{{- define "microservice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "microservice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Container image: "<repository>@<digest>" when image.digest is set, else
"<repository>:<tag>" with the chart appVersion as the fallback tag.
*/}}
{{- define "microservice.image" -}}
{{- $repository := required "image.repository is required (the claim's image.repository)" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/*
Name of the ConfigMap (rendered only when .Values.config is non-empty) and of the Secret
the ExternalSecret creates.
*/}}
{{- define "microservice.configMapName" -}}
{{- include "microservice.fullname" . -}}
{{- end -}}

{{- define "microservice.secretName" -}}
{{- include "microservice.fullname" . -}}
{{- end -}}

{{/*
True ("true") when a value is set: not null and not the empty string. 0 counts as set,
unlike a plain `if`.
*/}}
{{- define "microservice.isSet" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") -}}true{{- end -}}
{{- end -}}

{{/*
API versions. autoscaling/v2 (Kubernetes >= 1.23) and policy/v1 (>= 1.21) are used when the
cluster serves them; older clusters get the beta API with the same fields. `helm template`
without --api-versions assumes a current cluster (the v1/v2 APIs).
*/}}
{{- define "microservice.hpa.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "autoscaling/v2" -}}
autoscaling/v2
{{- else if .Capabilities.APIVersions.Has "autoscaling/v2beta2" -}}
autoscaling/v2beta2
{{- else -}}
autoscaling/v2
{{- end -}}
{{- end -}}

{{- define "microservice.pdb.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1" -}}
policy/v1
{{- else if .Capabilities.APIVersions.Has "policy/v1beta1" -}}
policy/v1beta1
{{- else -}}
policy/v1
{{- end -}}
{{- end -}}

{{/*
External Secrets Operator: external-secrets.io/v1 (ESO >= 0.17); v1beta1 only on clusters
that serve nothing newer.
*/}}
{{- define "microservice.externalSecret.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "external-secrets.io/v1" -}}
external-secrets.io/v1
{{- else if .Capabilities.APIVersions.Has "external-secrets.io/v1beta1" -}}
external-secrets.io/v1beta1
{{- else -}}
external-secrets.io/v1
{{- end -}}
{{- end -}}

{{/*
Ingress hosts as a list of non-empty host names (for TLS entries without hosts).
*/}}
{{- define "microservice.ingress.hostNames" -}}
{{- $hosts := list -}}
{{- range .Values.ingress.hosts -}}
{{- if .host -}}
{{- $hosts = append $hosts .host -}}
{{- end -}}
{{- end -}}
{{- toJson $hosts -}}
{{- end -}}

{{/*
The Ingress TLS entries: ingress.tls (an entry without hosts covers every ingress host, an
entry without secretName gets "<fullname>-tls"), or, when ingress.tls is empty and
certManager.clusterIssuer is set, one entry "<fullname>-tls" for every host.
Returned as JSON.
*/}}
{{- define "microservice.ingress.tls" -}}
{{- $allHosts := include "microservice.ingress.hostNames" . | fromJsonArray -}}
{{- $defaultSecret := printf "%s-tls" (include "microservice.fullname" .) -}}
{{- $entries := list -}}
{{- if .Values.ingress.tls -}}
{{- range .Values.ingress.tls -}}
{{- $entries = append $entries (dict "secretName" (.secretName | default $defaultSecret) "hosts" (.hosts | default $allHosts)) -}}
{{- end -}}
{{- else if .Values.certManager.clusterIssuer -}}
{{- $entries = append $entries (dict "secretName" $defaultSecret "hosts" $allHosts) -}}
{{- end -}}
{{- toJson $entries -}}
{{- end -}}

{{/*
Pod anti-affinity from podAntiAffinityPreset ("soft" or "hard", spreading the pods over
nodes); used only when .Values.affinity is empty.
*/}}
{{- define "microservice.affinity" -}}
{{- if .Values.affinity -}}
{{- toYaml .Values.affinity -}}
{{- else if eq (.Values.podAntiAffinityPreset | default "") "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "microservice.selectorLabels" . | nindent 12 }}
{{- else if eq (.Values.podAntiAffinityPreset | default "") "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "microservice.selectorLabels" . | nindent 10 }}
{{- end -}}
{{- end -}}
