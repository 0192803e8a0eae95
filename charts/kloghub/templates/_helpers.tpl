{{/* ---------------------------------------------------------------- names and labels */}}

{{- define "kloghub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kloghub.fullname" -}}
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

{{- define "kloghub.agent.fullname" -}}
{{- printf "%s-agent" (include "kloghub.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kloghub.collector.fullname" -}}
{{- printf "%s-collector" (include "kloghub.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; call with (dict "root" $ "component" "agent"). */}}
{{- define "kloghub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kloghub.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: kloghub
{{- end }}

{{- define "kloghub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kloghub.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kloghub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kloghub.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "kloghub.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kloghub.collector.serviceAccountName" -}}
{{- if .Values.collector.serviceAccount.create }}
{{- default (include "kloghub.collector.fullname" .) .Values.collector.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.collector.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- fixed paths and ports */}}
{{/* Paths inside the containers; the config file and the volume mounts both use these. */}}

{{- define "kloghub.configDir" -}}/etc/kloghub{{- end }}
{{- define "kloghub.configFile" -}}/etc/kloghub/kloghub.yaml{{- end }}
{{- define "kloghub.tlsDir" -}}/etc/kloghub/tls{{- end }}
{{- define "kloghub.secretsDir" -}}/etc/kloghub/secrets{{- end }}
{{- define "kloghub.rulesDir" -}}/etc/kloghub/rules{{- end }}
{{- define "kloghub.agent.stateDir" -}}/var/lib/kloghub{{- end }}
{{- define "kloghub.collector.stateDir" -}}/var/lib/kloghub-collector{{- end }}
{{- define "kloghub.agent.metricsPort" -}}2020{{- end }}
{{- define "kloghub.collector.metricsPort" -}}2021{{- end }}

{{- define "kloghub.collector.enabled" -}}
{{- if ne .Values.level "crawl" }}true{{ end }}
{{- end }}

{{- define "kloghub.collector.host" -}}
{{- printf "%s.%s.svc.%s" (include "kloghub.collector.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* ---------------------------------------------------------------- what the agent needs */}}
{{/*
The few settings that decide RBAC, capabilities and mounts, read from agent.config with
the level preset's value as the default (src/kloghub/config/presets/*.yaml; the chart
tests compare these with what `kloghub validate` reports for every level).
Returns YAML: kubernetesApi, namespaces, nodes, nodeLogs.
*/}}
{{- define "kloghub.agent.needs" -}}
{{- $cfg := .Values.agent.config }}
{{- $enrich := dict }}
{{- if hasKey $cfg "enrichment" }}{{ $enrich = $cfg.enrichment }}{{ end }}
{{- $api := ne .Values.level "crawl" }}
{{- if hasKey $enrich "kubernetes_api" }}{{ $api = $enrich.kubernetes_api }}{{ end }}
{{- $namespaces := false }}
{{- if hasKey $enrich "namespace_metadata" }}{{ $namespaces = $enrich.namespace_metadata }}{{ end }}
{{- $nodes := false }}
{{- if hasKey $enrich "node_labels" }}{{ $nodes = $enrich.node_labels }}{{ end }}
{{- if and (not $api) (or $namespaces $nodes) }}
{{- fail "agent.config.enrichment: namespace_metadata and node_labels read the Kubernetes API; set enrichment.kubernetes_api: true too (it is off at level crawl)" }}
{{- end }}
{{- $nodeLogs := ne .Values.level "crawl" }}
{{- $sources := dict }}
{{- if hasKey $cfg "sources" }}{{ $sources = $cfg.sources }}{{ end }}
{{- if hasKey $sources "node" }}
{{- if hasKey $sources.node "enabled" }}{{ $nodeLogs = $sources.node.enabled }}{{ end }}
{{- end }}
kubernetesApi: {{ $api }}
namespaces: {{ $namespaces }}
nodes: {{ $nodes }}
nodeLogs: {{ $nodeLogs }}
{{- end }}

{{/* ---------------------------------------------------------------- forward secrets */}}
{{/*
The Secret holding the Forward shared key: the one named in forward.sharedKeySecret, or
<fullname>-forward, which the chart generates once (forward-secrets.yaml) and keeps
across upgrades.
*/}}
{{- define "kloghub.forward.keySecret" -}}
{{- default (printf "%s-forward" (include "kloghub.fullname" .)) .Values.forward.sharedKeySecret.name }}
{{- end }}

{{- define "kloghub.forward.keyFile" -}}
{{- printf "%s/forward/shared-key" (include "kloghub.secretsDir" .) }}
{{- end }}

{{/*
The chart's own handshake users, one per kind of agent; their passwords are generated
once in the Secret <fullname>-forward-users (kept across upgrades). Both are shared by a
whole DaemonSet (they prove membership, not a node); only the control-plane one, mounted
only by the audit DaemonSet on control-plane nodes, may send audit events.
*/}}
{{- define "kloghub.forward.usersSecret" -}}
{{- default (printf "%s-forward-users" (include "kloghub.fullname" .)) .Values.forward.agentUsersSecret.name }}
{{- end }}

{{- define "kloghub.forward.passwordFile" -}}
{{- printf "%s/forward/password" (include "kloghub.secretsDir" .) }}
{{- end }}

{{/*
How agents authenticate (forward.agentIdentity): podCertificate or sharedUser; empty
means podCertificate at level run, sharedUser at walk.
*/}}
{{- define "kloghub.forward.identity" -}}
{{- $id := .Values.forward.agentIdentity }}
{{- if not $id }}{{ $id = ternary "podCertificate" "sharedUser" (eq .Values.level "run") }}{{ end }}
{{- $id }}
{{- end }}

{{/* "true" when the collector signs pod certificates for the agents. */}}
{{- define "kloghub.podCertificates" -}}
{{- if and (include "kloghub.collector.enabled" .) (eq (include "kloghub.forward.identity" .) "podCertificate") }}true{{ end }}
{{- end }}

{{- define "kloghub.podCertificates.signer" -}}kloghub.io/forward-agent{{- end }}

{{/* The Secret with the CA (ca.crt, ca.key) that signs the agents' pod certificates. */}}
{{- define "kloghub.podCertificates.caSecret" -}}
{{- printf "%s-agent-ca" (include "kloghub.fullname" .) }}
{{- end }}

{{/* Where the kubelet writes an agent's key and certificate chain (one PEM file). */}}
{{- define "kloghub.podCertificates.bundle" -}}
{{- printf "%s/identity/credential-bundle.pem" (include "kloghub.secretsDir" .) }}
{{- end }}

{{/* The audit agents' ServiceAccount: their own with pod certificates (its certificates
carry the control-plane role), else the node agents'. */}}
{{- define "kloghub.agentAudit.serviceAccountName" -}}
{{- if include "kloghub.podCertificates" . }}
{{- include "kloghub.agentAudit.fullname" . }}
{{- else }}
{{- include "kloghub.agent.serviceAccountName" . }}
{{- end }}
{{- end }}

{{/* Whether the audit DaemonSet runs: level run and audit.enabled. */}}
{{- define "kloghub.audit.enabled" -}}
{{- if and (eq .Values.level "run") .Values.audit.enabled }}true{{ end }}
{{- end }}

{{- define "kloghub.agentAudit.fullname" -}}
{{- printf "%s-agent-audit" (include "kloghub.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kloghub.agentAudit.stateDir" -}}/var/lib/kloghub-audit{{- end }}

{{/* The collector's certificate Secret: given, generated by the chart, or cert-manager's. */}}
{{- define "kloghub.forward.tlsSecret" -}}
{{- default (printf "%s-forward-tls" (include "kloghub.fullname" .)) .Values.forward.tls.secretName }}
{{- end }}

{{/* Which source the collector's certificate has: given, certManager or chart. */}}
{{- define "kloghub.forward.tlsSource" -}}
{{- if .Values.forward.tls.secretName }}given
{{- else if .Values.certManager.enabled }}certManager
{{- else }}chart
{{- end }}
{{- end }}

{{/* The names the collector's certificate must hold (what agents dial), as a YAML list. */}}
{{- define "kloghub.forward.dnsNames" -}}
{{- $svc := include "kloghub.collector.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (include "kloghub.collector.host" .) }}
{{- toYaml (concat $names .Values.forward.tls.extraDnsNames) }}
{{- end }}

{{/* ---------------------------------------------------------------- agent config */}}

{{/*
The agent's one output; the shared key and the password are files of a mounted Secret.
Call with (dict "root" $ "user" "agent"|"control-plane").
*/}}
{{- define "kloghub.agent.output" -}}
{{- $user := .user }}
{{- with .root }}
{{- $out := dict }}
{{- if include "kloghub.collector.enabled" . }}
{{- $fwd := .Values.forward }}
{{- if $fwd.tls.enabled }}
{{- $_ := set $out "url" (printf "forward+tls://%s:%d" (include "kloghub.collector.host" .) (int $fwd.port)) }}
{{- $_ := set $out "tls" (dict "enabled" true "ca_file" (printf "%s/forward/ca.crt" (include "kloghub.tlsDir" .)) "verify" $fwd.tls.verify) }}
{{- else }}
{{- $_ := set $out "url" (printf "forward://%s:%d" (include "kloghub.collector.host" .) (int $fwd.port)) }}
{{- end }}
{{- $_ := set $out "shared_key_file" (include "kloghub.forward.keyFile" .) }}
{{- if include "kloghub.podCertificates" . }}
{{- $_ := set $out.tls "credential_bundle_file" (include "kloghub.podCertificates.bundle" .) }}
{{- else }}
{{- $_ := set $out "username" (printf "kloghub-%s" $user) }}
{{- $_ := set $out "password_file" (include "kloghub.forward.passwordFile" .) }}
{{- end }}
{{- else }}
{{- $_ := set $out "url" (printf "store:%s/store.db" (include "kloghub.agent.stateDir" .)) }}
{{- end }}
{{- toYaml (mergeOverwrite (deepCopy .Values.agent.output) $out) }}
{{- end }}
{{- end }}

{{/* The agent: section of the config file (no secrets: they are files of mounted Secrets). */}}
{{- define "kloghub.agent.config" -}}
{{- $cfg := deepCopy .Values.agent.config }}
{{- $_ := set $cfg "state_dir" (include "kloghub.agent.stateDir" .) }}
{{- $_ := set $cfg "metrics_addr" (printf "0.0.0.0:%s" (include "kloghub.agent.metricsPort" .)) }}
{{- $_ := set $cfg "drain_timeout" (printf "%ds" (int .Values.agent.drainTimeoutSeconds)) }}
{{- $_ := set $cfg "outputs" (list (include "kloghub.agent.output" (dict "root" . "user" "agent") | fromYaml)) }}
{{- if include "kloghub.collector.enabled" . }}
{{- /* The audit log is read by the audit DaemonSet (level run, audit.enabled), whose user
may send audit events; the node agents' user may not, so they never read it. */}}
{{- $sources := dict }}
{{- if hasKey $cfg "sources" }}{{ $sources = $cfg.sources }}{{ end }}
{{- $_ := set $sources "audit" (dict "enabled" false) }}
{{- $_ := set $cfg "sources" $sources }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The audit agent's agent: section: the audit log only, no API access, its own state dir,
and the control-plane user.
*/}}
{{- define "kloghub.agentAudit.config" -}}
{{- $cfg := dict }}
{{- $_ := set $cfg "state_dir" (include "kloghub.agentAudit.stateDir" .) }}
{{- $_ := set $cfg "metrics_addr" (printf "0.0.0.0:%s" (include "kloghub.agent.metricsPort" .)) }}
{{- $_ := set $cfg "drain_timeout" (printf "%ds" (int .Values.agent.drainTimeoutSeconds)) }}
{{- $_ := set $cfg "enrichment" (dict "kubernetes_api" false "persist_cache" false) }}
{{- $audit := dict "enabled" true "path" .Values.audit.path }}
{{- $_ := set $cfg "sources" (dict "containers" (dict "enabled" false) "node" (dict "enabled" false) "audit" $audit) }}
{{- $_ := set $cfg "outputs" (list (include "kloghub.agent.output" (dict "root" . "user" "control-plane") | fromYaml)) }}
{{- toYaml $cfg }}
{{- end }}

{{/* ---------------------------------------------------------------- collector config */}}

{{/* The SIEM backends that are enabled, in a fixed order. */}}
{{- define "kloghub.backends" -}}
{{- $enabled := list }}
{{- range $name := list "elasticsearch" "opensearch" "splunk" }}
{{- if (get $.Values.backends $name).enabled }}{{ $enabled = append $enabled $name }}{{ end }}
{{- end }}
{{- join "," $enabled }}
{{- end }}

{{/*
The collector's sinks; call with (dict "root" $). Credentials are `*_file` paths of the
backend's Secret, mounted by the collector (never the values). Returns YAML {sinks: [...]}.
*/}}
{{- define "kloghub.collector.sinks" -}}
{{- $root := .root }}
{{- $sinks := list }}
{{- $backends := include "kloghub.backends" $root }}
{{- range $name := compact (splitList "," $backends) }}
{{- $b := get $root.Values.backends $name }}
{{- if not $b.url }}
{{- fail (printf "backends.%s.url is required when backends.%s.enabled is true" $name $name) }}
{{- end }}
{{- $scheme := dict "elasticsearch" "elasticsearch" "opensearch" "opensearch" "splunk" "splunk-hec" }}
{{- $sink := dict "url" (printf "%s+%s" (get $scheme $name) $b.url) }}
{{- if and (ne $name "splunk") $b.username }}{{ $_ := set $sink "username" $b.username }}{{ end }}
{{- if eq $name "splunk" }}
{{- if $b.index }}{{ $_ := set $sink "index" $b.index }}{{ end }}
{{- $_ := set $sink "indexer_ack" $b.indexerAck }}
{{- end }}
{{- if or $b.tls.caSecret.name (not $b.tls.verify) }}
{{- $tls := dict "verify" $b.tls.verify }}
{{- if $b.tls.caSecret.name }}
{{- $_ := set $tls "ca_file" (printf "%s/%s/ca.crt" (include "kloghub.tlsDir" $root) $name) }}
{{- end }}
{{- $_ := set $sink "tls" $tls }}
{{- end }}
{{- range $ref := include "kloghub.backend.secretFiles" (dict "root" $root "name" $name "backend" $b) | fromYamlArray }}
{{- $_ := set $sink (printf "%s_file" $ref.field) $ref.path }}
{{- end }}
{{- $sinks = append $sinks (mergeOverwrite (deepCopy $b.sink) $sink) }}
{{- end }}
{{- if not $sinks }}
{{- $store := dict "url" (printf "store:%s/store.db" (include "kloghub.collector.stateDir" $root)) }}
{{- $sinks = append $sinks (mergeOverwrite (deepCopy $root.Values.backends.store.sink) $store) }}
{{- end }}
{{- toYaml (dict "sinks" $sinks) }}
{{- end }}

{{/*
The Secret-backed files of one backend; call with (dict "root" $ "name" NAME "backend"
VALUES). A YAML list of {field, secret, key, file, path}: `field` is the sink key whose
value is read from `path` (`field`_file), mounted from `key` of Secret `secret`.
*/}}
{{- define "kloghub.backend.secretFiles" -}}
{{- $b := .backend }}
{{- $dir := printf "%s/%s" (include "kloghub.secretsDir" .root) .name }}
{{- $refs := list }}
{{- if eq .name "splunk" }}
{{- if not $b.tokenSecret.name }}
{{- fail "backends.splunk.tokenSecret.name is required: the HEC token is read from that Secret" }}
{{- end }}
{{- $refs = append $refs (dict "field" "token" "secret" $b.tokenSecret.name "key" $b.tokenSecret.key "file" "token") }}
{{- else }}
{{- $apiKey := dict }}
{{- if hasKey $b "apiKeySecret" }}{{ $apiKey = $b.apiKeySecret }}{{ end }}
{{- if and $b.passwordSecret.name $apiKey.name }}
{{- fail (printf "backends.%s: set passwordSecret or apiKeySecret, not both" .name) }}
{{- end }}
{{- if $b.passwordSecret.name }}
{{- if not $b.username }}
{{- fail (printf "backends.%s.username is required with passwordSecret" .name) }}
{{- end }}
{{- $refs = append $refs (dict "field" "password" "secret" $b.passwordSecret.name "key" $b.passwordSecret.key "file" "password") }}
{{- end }}
{{- if $apiKey.name }}
{{- $refs = append $refs (dict "field" "api_key" "secret" $apiKey.name "key" $apiKey.key "file" "api-key") }}
{{- end }}
{{- end }}
{{- range $refs }}{{ $_ := set . "path" (printf "%s/%s" $dir .file) }}{{ end }}
{{- toYaml $refs }}
{{- end }}

{{/* The backend `kloghub search` reads in the collector pod: the first of ES, OpenSearch. */}}
{{- define "kloghub.searchBackend" -}}
{{- if .Values.backends.elasticsearch.enabled }}elasticsearch
{{- else if .Values.backends.opensearch.enabled }}opensearch
{{- end }}
{{- end }}

{{/* The collector: section of the config file (no secrets: `*_file` paths of mounted Secrets). */}}
{{- define "kloghub.collector.config" -}}
{{- $cfg := deepCopy .Values.collector.config }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.forward.port)) }}
{{- $_ := set $cfg "metrics_addr" (printf "0.0.0.0:%s" (include "kloghub.collector.metricsPort" .)) }}
{{- $_ := set $cfg "state_dir" (include "kloghub.collector.stateDir" .) }}
{{- $_ := set $cfg "drain_timeout" (printf "%ds" (int .Values.collector.drainTimeoutSeconds)) }}
{{- $listener := dict }}
{{- if hasKey $cfg "listener" }}{{ $listener = $cfg.listener }}{{ end }}
{{- if .Values.forward.tls.enabled }}
{{- $dir := printf "%s/forward" (include "kloghub.tlsDir" .) }}
{{- $tls := dict "enabled" true "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) }}
{{- if include "kloghub.podCertificates" . }}
{{- $caDir := printf "%s/agent-ca" (include "kloghub.tlsDir" .) }}
{{- $_ := set $tls "ca_file" (printf "%s/ca.crt" $caDir) }}
{{- /* At run every agent has a certificate; senders of forward.users have none. */}}
{{- $_ := set $listener "require_client_cert" (and (eq .Values.level "run") (not .Values.forward.users)) }}
{{- $sas := dict (include "kloghub.agent.serviceAccountName" .) (list "node") }}
{{- if include "kloghub.audit.enabled" . }}
{{- $_ := set $sas (include "kloghub.agentAudit.serviceAccountName" .) (list "node" "control-plane") }}
{{- end }}
{{- $pc := dict "enabled" true "namespace" .Release.Namespace "service_accounts" $sas "ca_cert_file" (printf "%s/ca.crt" $caDir) "ca_key_file" (printf "%s/ca.key" $caDir) "max_lifetime" (printf "%ds" (int .Values.forward.podCertificates.maxExpirationSeconds)) }}
{{- $_ := set $cfg "pod_certificates" $pc }}
{{- end }}
{{- $_ := set $listener "tls" $tls }}
{{- end }}
{{- $_ := set $listener "shared_key_file" (include "kloghub.forward.keyFile" .) }}
{{- $userDir := printf "%s/forward-users" (include "kloghub.secretsDir" .) }}
{{- $users := list }}
{{- if not (include "kloghub.podCertificates" .) }}
{{- $users = append $users (dict "username" "kloghub-agent" "password_file" (printf "%s/agent" $userDir) "shared" true "roles" (list "node")) }}
{{- $users = append $users (dict "username" "kloghub-control-plane" "password_file" (printf "%s/control-plane" $userDir) "shared" true "roles" (list "node" "control-plane")) }}
{{- end }}
{{- range $i, $u := .Values.forward.users }}
{{- $user := dict "username" $u.username "password_file" (printf "%s/%d" $userDir $i) }}
{{- if hasKey $u "shared" }}{{ $_ := set $user "shared" $u.shared }}{{ end }}
{{- if hasKey $u "roles" }}{{ $_ := set $user "roles" $u.roles }}{{ end }}
{{- $users = append $users $user }}
{{- end }}
{{- $_ := set $listener "users" $users }}
{{- $_ := set $cfg "listener" $listener }}
{{- $_ := set $cfg "sinks" (include "kloghub.collector.sinks" (dict "root" .) | fromYaml).sinks }}
{{- if .Values.notifications }}
{{- $detections := dict }}
{{- if hasKey $cfg "detections" }}{{ $detections = $cfg.detections }}{{ end }}
{{- $_ := set $detections "notify" (include "kloghub.collector.notify" . | fromYaml).notify }}
{{- $_ := set $cfg "detections" $detections }}
{{- end }}
{{- $ruleDirs := include "kloghub.collector.ruleDirs" . | fromYamlArray }}
{{- if $ruleDirs }}
{{- $detections := dict }}
{{- if hasKey $cfg "detections" }}{{ $detections = $cfg.detections }}{{ end }}
{{- $given := list }}
{{- if hasKey $detections "rules_dirs" }}{{ $given = $detections.rules_dirs }}{{ end }}
{{- $_ := set $detections "rules_dirs" (concat $given $ruleDirs) }}
{{- $_ := set $cfg "detections" $detections }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The folders of .Values.detectionRules as the collector sees them (a YAML list): the
chart's inline rules, then each ConfigMap of the user's, in the order given.
*/}}
{{- define "kloghub.collector.ruleDirs" -}}
{{- $dirs := list }}
{{- if .Values.detectionRules.inline }}
{{- $dirs = append $dirs (printf "%s/inline/" (include "kloghub.rulesDir" .)) }}
{{- end }}
{{- range $i, $name := .Values.detectionRules.configMaps }}
{{- $dirs = append $dirs (printf "%s/%d/" (include "kloghub.rulesDir" $) $i) }}
{{- end }}
{{- toYaml $dirs }}
{{- end }}

{{/*
The collector's notification receivers (detections.notify) from .Values.notifications:
settings, plus `*_file` paths of the mounted Secrets (kloghub.notify.secretFiles).
*/}}
{{- define "kloghub.collector.notify" -}}
{{- $out := list }}
{{- range $i, $n := .Values.notifications }}
{{- $r := deepCopy (default (dict) $n.settings) }}
{{- $_ := set $r "type" $n.type }}
{{- if $n.username }}{{ $_ := set $r "username" $n.username }}{{ end }}
{{- range $ref := include "kloghub.notify.secretFiles" (dict "root" $ "index" $i "receiver" $n) | fromYamlArray }}
{{- if eq $ref.field "ca" }}
{{- $_ := set $r "tls" (dict "ca_file" $ref.path "verify" $n.tls.verify) }}
{{- else }}
{{- $_ := set $r (printf "%s_file" $ref.field) $ref.path }}
{{- end }}
{{- end }}
{{- if and $n.tls (not $n.tls.verify) (not $n.tls.caSecret.name) }}
{{- $_ := set $r "tls" (dict "verify" false) }}
{{- end }}
{{- $out = append $out $r }}
{{- end }}
{{- toYaml (dict "notify" $out) }}
{{- end }}

{{/*
The Secret-backed files of notification receiver `index`; call with (dict "root" $
"index" I "receiver" VALUES). A YAML list of {field, secret, key, file, path}, files under
<secretsDir>/notify/<index>/.
*/}}
{{- define "kloghub.notify.secretFiles" -}}
{{- $n := .receiver }}
{{- $dir := printf "%s/notify" (include "kloghub.secretsDir" .root) }}
{{- $refs := list }}
{{- if not $n.urlSecret.name }}
{{- fail (printf "notifications[%d].urlSecret.name is required: the receiver's URL is read from that Secret" (int .index)) }}
{{- end }}
{{- $refs = append $refs (dict "field" "url" "secret" $n.urlSecret.name "key" $n.urlSecret.key "file" "url") }}
{{- if and $n.tokenSecret $n.tokenSecret.name }}
{{- $refs = append $refs (dict "field" "token" "secret" $n.tokenSecret.name "key" $n.tokenSecret.key "file" "token") }}
{{- end }}
{{- if and $n.passwordSecret $n.passwordSecret.name }}
{{- if not $n.username }}
{{- fail (printf "notifications[%d].username is required with passwordSecret" (int .index)) }}
{{- end }}
{{- $refs = append $refs (dict "field" "password" "secret" $n.passwordSecret.name "key" $n.passwordSecret.key "file" "password") }}
{{- end }}
{{- if and $n.tls $n.tls.caSecret.name }}
{{- $refs = append $refs (dict "field" "ca" "secret" $n.tls.caSecret.name "key" $n.tls.caSecret.key "file" "ca.crt") }}
{{- end }}
{{- range $refs }}
{{- $_ := set . "file" (printf "%d/%s" (int $.index) .file) }}
{{- $_ := set . "path" (printf "%s/%s" $dir .file) }}
{{- end }}
{{- toYaml $refs }}
{{- end }}

{{/* The search: section of the collector's config file, when a backend can be searched. */}}
{{- define "kloghub.collector.search" -}}
{{- $name := include "kloghub.searchBackend" . }}
{{- if $name }}
{{- $b := get .Values.backends $name }}
{{- $search := dict "store" (printf "%s+%s" $name $b.url) }}
{{- if $b.username }}{{ $_ := set $search "username" $b.username }}{{ end }}
{{- range $ref := include "kloghub.backend.secretFiles" (dict "root" . "name" $name "backend" $b) | fromYamlArray }}
{{- $_ := set $search (printf "%s_file" $ref.field) $ref.path }}
{{- end }}
{{- if or $b.tls.caSecret.name (not $b.tls.verify) }}
{{- $tls := dict "verify" $b.tls.verify }}
{{- if $b.tls.caSecret.name }}
{{- $_ := set $tls "ca_file" (printf "%s/%s/ca.crt" (include "kloghub.tlsDir" .) $name) }}
{{- end }}
{{- $_ := set $search "tls" $tls }}
{{- end }}
{{- toYaml $search }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- shared pod pieces */}}

{{/*
The container security context of both components: nothing writable but the mounted
volumes, no privilege escalation, the runtime's seccomp profile, every capability
dropped; call with (dict "add" (list ...)) for the few the agent needs.
*/}}
{{- define "kloghub.containerSecurityContext" -}}
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
seccompProfile:
  type: RuntimeDefault
capabilities:
  drop:
    - ALL
  {{- with .add }}
  add:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "kloghub.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* Call with (dict "root" $ "port" "2020"). */}}
{{- define "kloghub.metricsAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}
