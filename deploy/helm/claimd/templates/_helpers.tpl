{{/*
Chart name, or nameOverride (a DNS-1123 label: at most 63 characters).
*/}}
{{- define "claimd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of every namespaced object: fullnameOverride, else the release name (with
"-<name>" appended when the release name does not already contain it).
*/}}
{{- define "claimd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "claimd.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of the cluster-scoped objects (ClusterRole, ClusterRoleBinding): the namespace is part
of it, so two releases in two namespaces do not collide.
*/}}
{{- define "claimd.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "claimd.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "claimd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: stable for the life of the release (a Deployment's selector is immutable).
*/}}
{{- define "claimd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "claimd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "claimd.labels" -}}
helm.sh/chart: {{ include "claimd.chart" . }}
{{ include "claimd.selectorLabels" . }}
app.kubernetes.io/version: {{ regexReplaceAll "[^A-Za-z0-9_.-]" (include "claimd.tag" .) "_" | trunc 63 | trimAll "-_." | quote }}
app.kubernetes.io/component: gitops-renderer
app.kubernetes.io/part-of: claimd
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "claimd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "claimd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "claimd.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- end -}}

{{/*
Container image: "<repository>@<digest>" when image.digest is set, else "<repository>:<tag>".
*/}}
{{- define "claimd.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "claimd.tag" .) -}}
{{- end -}}
{{- end -}}

{{/*
Where the config volume is mounted; claimd.yaml and secrets/<file> are in it.
*/}}
{{- define "claimd.configDir" -}}/etc/claimd{{- end -}}

{{/*
Every Secret reference that is set, as a JSON object: role -> {secret, key, path}, where
path is relative to the config volume (secrets/<file>). The config names the file
(<configDir>/<path>), the pod's projected volume puts the Secret's key there.
*/}}
{{- define "claimd.secretFiles" -}}
{{- $files := dict -}}
{{- $refs := list
      (list "giteaToken" .Values.gitea.token "gitea-token")
      (list "giteaWebhookSecret" .Values.gitea.webhookSecret "gitea-webhook-secret")
      (list "giteaCa" .Values.gitea.ca "gitea-ca.crt")
      (list "argocdSecret" .Values.argocd.secret "argocd-webhook-secret")
      (list "argocdCa" .Values.argocd.ca "argocd-ca.crt") -}}
{{- range $host, $h := .Values.registries.hosts -}}
{{- $hh := $h | default dict -}}
{{- $safe := regexReplaceAll "[^A-Za-z0-9.-]" $host "_" -}}
{{- $refs = append $refs (list (printf "registry/%s/password" $host) $hh.password (printf "registry-%s-password" $safe)) -}}
{{- $refs = append $refs (list (printf "registry/%s/token" $host) $hh.token (printf "registry-%s-token" $safe)) -}}
{{- $refs = append $refs (list (printf "registry/%s/ca" $host) $hh.ca (printf "registry-%s-ca.crt" $safe)) -}}
{{- end -}}
{{- range $refs -}}
{{- $ref := index . 1 | default dict -}}
{{- if $ref.existingSecret -}}
{{- $_ := set $files (index . 0) (dict "secret" $ref.existingSecret "key" (required (printf "%s: the Secret's key" (index . 0)) $ref.key) "path" (printf "secrets/%s" (index . 2))) -}}
{{- end -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/*
The absolute path of a secret file by role, or "" when that Secret is not referenced.
Call with (list $ "role").
*/}}
{{- define "claimd.secretPath" -}}
{{- $root := index . 0 -}}
{{- $files := include "claimd.secretFiles" $root | fromJson -}}
{{- with index $files (index . 1) -}}
{{- printf "%s/%s" (include "claimd.configDir" $root) .path -}}
{{- end -}}
{{- end -}}

{{- define "claimd.webhookUrl" -}}
{{- .Values.gitea.webhookUrl | default (printf "http://%s.%s.svc.cluster.local:%d/hooks/gitea" (include "claimd.fullname" .) .Release.Namespace (int .Values.service.webhookPort)) -}}
{{- end -}}

{{/*
claimd.yaml (see claimd's src/daemon/config.rs for every key): built as a map, then
written with toYaml, so every value is quoted as YAML needs.
*/}}
{{- define "claimd.config" -}}
{{- $root := . -}}
{{- $cfg := dict "listen" "127.0.0.1:7462" "dataDir" .Values.dataDir -}}
{{- $repos := list -}}
{{- range .Values.config.repositories -}}
{{- $r := dict "giteaRepository" (required "config.repositories[]: giteaRepository (OWNER/NAME in Gitea) is required" .giteaRepository) -}}
{{- with .branch }}{{ $_ := set $r "branch" . }}{{ end -}}
{{- $repos = append $repos $r -}}
{{- end -}}
{{- $_ := set $cfg "repositories" $repos -}}
{{- with .Values.config.charts }}{{ $_ := set $cfg "charts" . }}{{ end -}}
{{- with .Values.config.chartsRepository }}{{ $_ := set $cfg "chartsRepository" . }}{{ end -}}
{{- with .Values.config.bot }}{{ $_ := set $cfg "bot" (deepCopy .) }}{{ end -}}
{{- /* gitea: */ -}}
{{- $gitea := dict "url" (required "gitea.url is required (Gitea's root URL as claimd reaches it)" .Values.gitea.url) -}}
{{- with include "claimd.secretPath" (list $root "giteaToken") }}{{ $_ := set $gitea "tokenFile" . }}{{ end -}}
{{- with include "claimd.secretPath" (list $root "giteaCa") }}{{ $_ := set $gitea "caFile" . }}{{ end -}}
{{- $_ := set $gitea "webhookListen" (printf "0.0.0.0:%d" (int .Values.service.webhookPort)) -}}
{{- $secret := include "claimd.secretPath" (list $root "giteaWebhookSecret") -}}
{{- if not $secret -}}
{{- fail "gitea.webhookSecret.existingSecret is required: the webhook receiver refuses to run without a secret" -}}
{{- end -}}
{{- $_ := set $gitea "webhookSecretFile" $secret -}}
{{- $_ := set $gitea "webhookUrl" (include "claimd.webhookUrl" .) -}}
{{- with .Values.gitea.pageUrl }}{{ $_ := set $gitea "pageUrl" . }}{{ end -}}
{{- $_ := set $cfg "gitea" $gitea -}}
{{- /* registries: */ -}}
{{- $reg := dict "cache" (printf "%s/cache" (.Values.dataDir | trimSuffix "/")) -}}
{{- if and (not (kindIs "invalid" .Values.registries.refresh)) (ne (toString .Values.registries.refresh) "") -}}
{{- $_ := set $reg "refresh" (int64 .Values.registries.refresh) -}}
{{- end -}}
{{- if .Values.registries.offline }}{{ $_ := set $reg "offline" true }}{{ end -}}
{{- $hosts := dict -}}
{{- range $host, $h := .Values.registries.hosts -}}
{{- $out := dict -}}
{{- $hh := $h | default dict -}}
{{- if $hh.plainHttp }}{{ $_ := set $out "plainHttp" true }}{{ end -}}
{{- with $hh.username }}{{ $_ := set $out "username" . }}{{ end -}}
{{- with include "claimd.secretPath" (list $root (printf "registry/%s/password" $host)) }}{{ $_ := set $out "passwordFile" . }}{{ end -}}
{{- with include "claimd.secretPath" (list $root (printf "registry/%s/token" $host)) }}{{ $_ := set $out "tokenFile" . }}{{ end -}}
{{- with include "claimd.secretPath" (list $root (printf "registry/%s/ca" $host)) }}{{ $_ := set $out "caFile" . }}{{ end -}}
{{- $_ := set $hosts $host $out -}}
{{- end -}}
{{- if $hosts }}{{ $_ := set $reg "hosts" $hosts }}{{ end -}}
{{- $_ := set $cfg "registries" $reg -}}
{{- /* argocd: */ -}}
{{- if .Values.argocd.urls -}}
{{- $argo := dict "urls" .Values.argocd.urls -}}
{{- with include "claimd.secretPath" (list $root "argocdSecret") }}{{ $_ := set $argo "secretFile" . }}{{ end -}}
{{- with include "claimd.secretPath" (list $root "argocdCa") }}{{ $_ := set $argo "caFile" . }}{{ end -}}
{{- $_ := set $cfg "argocd" $argo -}}
{{- end -}}
{{- $kube := deepCopy (.Values.kubernetes | default dict) -}}
{{- if and (include "claimd.leases" .) (not (hasKey $kube "leases")) -}}
{{- $_ := set $kube "leases" (dict "namespace" .Release.Namespace "durationSeconds" (int .Values.leases.durationSeconds)) -}}
{{- end -}}
{{- if $kube }}{{ $_ := set $cfg "kubernetes" $kube }}{{ end -}}
{{- $cfg = mergeOverwrite $cfg (deepCopy (.Values.config.extra | default dict)) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
The data volume is shared by the pods of a rolling update (and by several replicas):
only possible with ReadWriteMany, or an existing claim the operator vouches for.
*/}}
{{- define "claimd.sharedVolume" -}}
{{- if or .Values.persistence.existingClaim (has "ReadWriteMany" .Values.persistence.accessModes) -}}true{{- end -}}
{{- end -}}

{{- define "claimd.pdb.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1" -}}
policy/v1
{{- else if .Capabilities.APIVersions.Has "policy/v1beta1" -}}
policy/v1beta1
{{- else -}}
policy/v1
{{- end -}}
{{- end -}}

{{/*
"true" when claimd takes per-repository Leases: leases.enabled, or (empty) more than one replica.
*/}}
{{- define "claimd.leases" -}}
{{- $on := .Values.leases.enabled -}}
{{- if kindIs "bool" $on -}}
{{- if $on }}true{{ end -}}
{{- else if gt (int .Values.replicaCount) 1 -}}
true
{{- end -}}
{{- end -}}
