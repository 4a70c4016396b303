{{/*
Names and labels.
*/}}
{{- define "haproxy-log-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "haproxy-log-exporter.fullname" -}}
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

{{- define "haproxy-log-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "haproxy-log-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "haproxy-log-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "haproxy-log-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "haproxy-log-exporter.labels" -}}
helm.sh/chart: {{ include "haproxy-log-exporter.chart" . }}
{{ include "haproxy-log-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "haproxy-log-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "haproxy-log-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "haproxy-log-exporter.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Mode checks, done once by every template that depends on the mode.
*/}}
{{- define "haproxy-log-exporter.standalone" -}}
{{- if not (has .Values.mode (list "standalone" "sidecar")) }}
{{- fail (printf "mode must be standalone or sidecar, not %q" (toString .Values.mode)) }}
{{- end }}
{{- if eq .Values.mode "standalone" }}true{{ end }}
{{- end }}

{{/*
A comma-separated list from a string or a list.
*/}}
{{- define "haproxy-log-exporter.csv" -}}
{{- if kindIs "slice" . }}{{ join "," . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/*
A value as the exporter reads it: a whole number without a decimal point
(YAML numbers come through as floats), anything else as written.
*/}}
{{- define "haproxy-log-exporter.scalar" -}}
{{- if kindIs "float64" . }}
{{- ternary (toString (int64 .)) (toString .) (eq (float64 (int64 .)) .) }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
The exporter's environment as a YAML map, NAME: value. The first-class values
come first; `config` is merged over them, so any HLE_ variable can be set or
overridden without a change to the chart. A setting that is null (or an empty
string, for the optional ones) is left out, so that the exporter's own default
applies.
*/}}
{{- define "haproxy-log-exporter.envMap" -}}
{{- $v := .Values }}
{{- $env := dict }}
{{- $bind := $v.syslog.bindAddress }}
{{- if not $bind }}
{{- $bind = ternary "0.0.0.0" "127.0.0.1" (eq $v.mode "standalone") }}
{{- end }}
{{- $_ := set $env "HLE_SYSLOG_UDP_ADDR" (ternary (printf "%s:%d" $bind (int $v.syslog.udp.port)) "" $v.syslog.udp.enabled) }}
{{- $_ = set $env "HLE_SYSLOG_TCP_ADDR" (ternary (printf "%s:%d" $bind (int $v.syslog.tcp.port)) "" $v.syslog.tcp.enabled) }}
{{- if $v.syslog.unixSocket.enabled }}
{{- $_ = set $env "HLE_SYSLOG_UNIX_PATH" $v.syslog.unixSocket.path }}
{{- $_ = set $env "HLE_SYSLOG_UNIX_MODE" (toString $v.syslog.unixSocket.mode) }}
{{- end }}
{{- if not (kindIs "invalid" $v.syslog.udpReceiveBufferBytes) }}
{{- $_ = set $env "HLE_UDP_RECV_BUFFER_BYTES" (toString (int64 $v.syslog.udpReceiveBufferBytes)) }}
{{- end }}
{{- $_ = set $env "HLE_WEB_LISTEN_ADDR" (printf "0.0.0.0:%d" (int $v.web.port)) }}
{{- $_ = set $env "HLE_WEB_TELEMETRY_PATH" $v.web.telemetryPath }}
{{- if $v.web.config.secretName }}
{{- $_ = set $env "HLE_WEB_CONFIG_FILE" (printf "%s/%s" (trimSuffix "/" $v.web.config.mountPath) $v.web.config.key) }}
{{- end }}
{{- $_ = set $env "HLE_LOG_LEVEL" $v.logLevel }}
{{- $_ = set $env "HLE_LOG_OUTPUT" $v.logOutput }}
{{- $_ = set $env "HLE_ENABLED_METRICS" (include "haproxy-log-exporter.csv" $v.metrics.enabled) }}
{{- range $metric, $labels := $v.metrics.labels }}
{{- if not (kindIs "invalid" $labels) }}
{{- $_ = set $env (printf "HLE_%s_LABELS" (upper $metric)) (include "haproxy-log-exporter.csv" $labels) }}
{{- end }}
{{- end }}
{{- range $metric, $buckets := $v.metrics.buckets }}
{{- if not (kindIs "invalid" $buckets) }}
{{- $_ = set $env (printf "HLE_%s_BUCKETS" (upper $metric)) (include "haproxy-log-exporter.csv" $buckets) }}
{{- end }}
{{- end }}
{{- if $v.metrics.customLabels }}
{{- $_ = set $env "HLE_CUSTOM_LABELS" (include "haproxy-log-exporter.csv" $v.metrics.customLabels) }}
{{- end }}
{{- if not (kindIs "invalid" $v.metrics.maxSeriesPerMetric) }}
{{- $_ = set $env "HLE_MAX_SERIES_PER_METRIC" (toString (int64 $v.metrics.maxSeriesPerMetric)) }}
{{- end }}
{{- if $v.metrics.seriesTTL }}
{{- $_ = set $env "HLE_SERIES_TTL" (toString $v.metrics.seriesTTL) }}
{{- end }}
{{- $native := $v.metrics.nativeHistograms }}
{{- if kindIs "bool" $native }}
{{- /* YAML 1.1 reads an unquoted on or off as a boolean. */}}
{{- $native = ternary "on" "off" $native }}
{{- end }}
{{- if and (not (kindIs "invalid" $native)) (ne (toString $native) "off") }}
{{- $_ = set $env "HLE_NATIVE_HISTOGRAMS" (toString $native) }}
{{- end }}
{{- if not (kindIs "invalid" $v.metrics.nativeHistogramBucketFactor) }}
{{- $_ = set $env "HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR" (include "haproxy-log-exporter.scalar" $v.metrics.nativeHistogramBucketFactor) }}
{{- end }}
{{- if not (kindIs "invalid" $v.metrics.nativeHistogramMaxBuckets) }}
{{- $_ = set $env "HLE_NATIVE_HISTOGRAM_MAX_BUCKETS" (toString (int64 $v.metrics.nativeHistogramMaxBuckets)) }}
{{- end }}
{{- if $v.metrics.exemplarLabel }}
{{- $_ = set $env "HLE_EXEMPLAR_LABEL" $v.metrics.exemplarLabel }}
{{- end }}
{{- if $v.paths.rules }}
{{- $_ = set $env "HLE_PATH_RULES" $v.paths.rules }}
{{- end }}
{{- if not (kindIs "invalid" $v.paths.autoTemplates) }}
{{- $_ = set $env "HLE_PATH_AUTO_TEMPLATES" (toString $v.paths.autoTemplates) }}
{{- end }}
{{- if $v.paths.allow }}
{{- $_ = set $env "HLE_PATH_ALLOW" $v.paths.allow }}
{{- end }}
{{- if not (kindIs "invalid" $v.paths.maxSegments) }}
{{- $_ = set $env "HLE_PATH_MAX_SEGMENTS" (toString (int64 $v.paths.maxSegments)) }}
{{- end }}
{{- if not (kindIs "invalid" $v.clientIP.prefixV4) }}
{{- $_ = set $env "HLE_CLIENT_IP_PREFIX_V4" (toString (int64 $v.clientIP.prefixV4)) }}
{{- end }}
{{- if not (kindIs "invalid" $v.clientIP.prefixV6) }}
{{- $_ = set $env "HLE_CLIENT_IP_PREFIX_V6" (toString (int64 $v.clientIP.prefixV6)) }}
{{- end }}
{{- if $v.spoe.enabled }}
{{- $spoeBind := $v.spoe.bindAddress }}
{{- if not $spoeBind }}
{{- $spoeBind = ternary "0.0.0.0" "127.0.0.1" (eq $v.mode "standalone") }}
{{- end }}
{{- $spoePort := int $v.spoe.port }}
{{- if or (eq $spoePort (int $v.web.port)) (and $v.syslog.tcp.enabled (eq $spoePort (int $v.syslog.tcp.port))) }}
{{- fail (printf "spoe.port %d is taken by the metrics endpoint or the syslog TCP listener: pick another" $spoePort) }}
{{- end }}
{{- $_ = set $env "HLE_SPOE_ADDR" (printf "%s:%d" $spoeBind $spoePort) }}
{{- $_ = set $env "HLE_SPOE_METRICS" (toString $v.spoe.metrics) }}
{{- range $name, $value := dict
    "HLE_SPOE_MAX_FRAME_SIZE" $v.spoe.maxFrameSize
    "HLE_SPOE_MAX_CONNECTIONS" $v.spoe.maxConnections }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ = set $env $name (toString (int64 $value)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $f := $v.forward }}
{{- $stdout := toString $f.stdout }}
{{- if and (kindIs "bool" $f.stdout) (not $f.stdout) }}
{{- /* `stdout: off` unquoted is YAML's false. */}}
{{- $stdout = "off" }}
{{- end }}
{{- if not (has $stdout (list "off" "raw" "json")) }}
{{- fail (printf "forward.stdout must be off, raw or json, not %q" $stdout) }}
{{- end }}
{{- if ne $stdout "off" }}
{{- $_ = set $env "HLE_FORWARD_STDOUT" $stdout }}
{{- end }}
{{- if $f.syslog.address }}
{{- $_ = set $env "HLE_FORWARD_SYSLOG_ADDR" $f.syslog.address }}
{{- end }}
{{- range $name, $value := dict
    "HLE_FORWARD_SYSLOG_FRAMING" $f.syslog.framing
    "HLE_FORWARD_SYSLOG_FORMAT" $f.syslog.format
    "HLE_FORWARD_SYSLOG_UDP_MAX_BYTES" $f.syslog.udpMaxBytes
    "HLE_FORWARD_CONNECT_TIMEOUT" $f.syslog.connectTimeout
    "HLE_FORWARD_RECONNECT_MAX_DELAY" $f.syslog.reconnectMaxDelay
    "HLE_FORWARD_BUFFER_LINES" $f.buffer.lines
    "HLE_FORWARD_BUFFER_BYTES" $f.buffer.bytes
    "HLE_FORWARD_SAMPLE_RATE" $f.sample.rate
    "HLE_FORWARD_SAMPLE_SLOW" $f.sample.slow
    "HLE_FORWARD_SHUTDOWN_GRACE" $f.shutdownGrace }}
{{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
{{- $_ = set $env $name (include "haproxy-log-exporter.scalar" $value) }}
{{- end }}
{{- end }}
{{- range $name, $value := $v.config }}
{{- if not (regexMatch "^HLE_[A-Z0-9_]+$" $name) }}
{{- fail (printf "config: %q is not an exporter variable (HLE_ and upper-case letters, digits, underscores)" $name) }}
{{- end }}
{{- if kindIs "invalid" $value }}
{{- $_ = unset $env $name }}
{{- else }}
{{- $_ = set $env $name (include "haproxy-log-exporter.scalar" $value) }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
The seconds the exporter may need after SIGTERM when a forwarding sink is on
(from the environment in force, `config` included), preStop sleep included:
the sleep, up to 10 s to read the connections to the end (the exporter's
fixed grace), then up to HLE_FORWARD_SHUTDOWN_GRACE (5s unless set) for the
sinks to deliver what they hold. Empty when no sink is on.
*/}}
{{- define "haproxy-log-exporter.forwardStopSeconds" -}}
{{- $env := include "haproxy-log-exporter.envMap" . | fromYaml }}
{{- $stdout := trim (toString (get $env "HLE_FORWARD_STDOUT")) }}
{{- $syslog := trim (toString (get $env "HLE_FORWARD_SYSLOG_ADDR")) }}
{{- if or (has $stdout (list "raw" "json")) $syslog }}
{{- $grace := trim (toString (default "5s" (get $env "HLE_FORWARD_SHUTDOWN_GRACE"))) }}
{{- $num := regexFind "^[0-9]+" $grace }}
{{- $unit := trimPrefix $num $grace }}
{{- $scale := dict "s" 1000 "ms" 1 "m" 60000 "h" 3600000 }}
{{- /* As the exporter: a number without a unit is refused, except 0. */}}
{{- if and $num (eq $unit "") (eq (atoi $num) 0) }}
{{- $_ := set $scale "" 1 }}
{{- end }}
{{- if not (and $num (hasKey $scale $unit)) }}
{{- fail (printf "HLE_FORWARD_SHUTDOWN_GRACE=%q: expected a number with a unit (ms, s, m, h), or 0" $grace) }}
{{- end }}
{{- $graceSeconds := div (add (mul (atoi $num) (get $scale $unit)) 999) 1000 }}
{{- $preStop := dig "preStop" "sleep" "seconds" 0 (.Values.lifecycle | default dict) | int }}
{{- add $preStop 10 $graceSeconds }}
{{- end }}
{{- end }}

{{/*
The exporter container: the Deployment's only container in standalone mode,
and the container the sidecar values snippets add to HAProxy's pods.
*/}}
{{- define "haproxy-log-exporter.container" -}}
{{- $v := .Values }}
{{- $standalone := include "haproxy-log-exporter.standalone" . }}
name: {{ $v.containerName }}
image: {{ include "haproxy-log-exporter.image" . | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
env:
{{- range $name, $value := include "haproxy-log-exporter.envMap" . | fromYaml }}
  - name: {{ $name }}
    value: {{ $value | toString | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{- toYaml . | nindent 2 }}
{{- end }}
ports:
  - name: hle-metrics
    containerPort: {{ $v.web.port }}
    protocol: TCP
{{- if and $standalone $v.syslog.udp.enabled }}
  - name: hle-syslog-udp
    containerPort: {{ $v.syslog.udp.port }}
    protocol: UDP
{{- end }}
{{- if and $standalone $v.syslog.tcp.enabled }}
  - name: hle-syslog-tcp
    containerPort: {{ $v.syslog.tcp.port }}
    protocol: TCP
{{- end }}
{{- if and $standalone $v.spoe.enabled }}
  - name: hle-spoe
    containerPort: {{ $v.spoe.port }}
    protocol: TCP
{{- end }}
{{- with $v.livenessProbe }}
livenessProbe:
  {{- include "haproxy-log-exporter.probe" (dict "probe" . "web" $v.web.config) | nindent 2 }}
{{- end }}
{{- if or $standalone $v.sidecar.readinessProbe }}
{{- with $v.readinessProbe }}
readinessProbe:
  {{- include "haproxy-log-exporter.probe" (dict "probe" . "web" $v.web.config) | nindent 2 }}
{{- end }}
{{- end }}
{{- with $v.lifecycle }}
lifecycle:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if or $v.syslog.unixSocket.enabled $v.web.config.secretName $v.extraVolumeMounts }}
volumeMounts:
{{- if $v.syslog.unixSocket.enabled }}
  - name: {{ $v.syslog.unixSocket.volumeName }}
    mountPath: {{ dir $v.syslog.unixSocket.path }}
{{- end }}
{{- if $v.web.config.secretName }}
  - name: {{ $v.web.config.volumeName }}
    mountPath: {{ $v.web.config.mountPath }}
    readOnly: true
{{- end }}
{{- with $v.extraVolumeMounts }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The emptyDir volume of the unix socket, as an item of a pod's volumes.
*/}}
{{- define "haproxy-log-exporter.socketVolume" -}}
- name: {{ .Values.syslog.unixSocket.volumeName }}
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}

{{/*
A probe as given, adapted to the web configuration: with basic auth an HTTP
probe would get 401, so it becomes a tcpSocket probe on the same port; with
TLS it speaks HTTPS.
*/}}
{{- define "haproxy-log-exporter.probe" -}}
{{- $p := deepCopy .probe }}
{{- if and .web.secretName $p.httpGet }}
{{- if .web.basicAuth }}
{{- $port := $p.httpGet.port }}
{{- $_ := unset $p "httpGet" }}
{{- $_ = set $p "tcpSocket" (dict "port" $port) }}
{{- else if .web.tls }}
{{- $_ := set $p.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- end }}
{{- toYaml $p }}
{{- end }}

{{/*
The web configuration Secret (and the TLS Secret beside it), as an item of a
pod's volumes.
*/}}
{{- define "haproxy-log-exporter.webConfigVolume" -}}
{{- $c := .Values.web.config -}}
- name: {{ $c.volumeName }}
  projected:
    sources:
      - secret:
          name: {{ $c.secretName }}
      {{- with $c.tlsSecretName }}
      - secret:
          name: {{ . }}
      {{- end }}
{{- end }}

{{/*
The scheme of a monitor's endpoint: its own, or https when the web
configuration turns TLS on.
*/}}
{{- define "haproxy-log-exporter.scrapeScheme" -}}
{{- .monitor.scheme | default (ternary "https" "http" .web.tls) }}
{{- end }}

{{/*
SPOE: the ConfigMap with the engine file, and the HAProxy side. The frontend
lines and the agent's backend are the blocks of deploy/spoe/haproxy.cfg
(files/hle-spoe-*.cfg, kept equal to them by .ci/k8s-checks), the backend's
server pointed at the agent: 127.0.0.1 in sidecar mode, the Service in
standalone mode.
*/}}
{{- define "haproxy-log-exporter.spoeConfigMapName" -}}
{{- printf "%s-spoe" (include "haproxy-log-exporter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "haproxy-log-exporter.spoeAgentAddress" -}}
{{- if eq .Values.mode "standalone" }}
{{- printf "%s.%s.svc:%d" (include "haproxy-log-exporter.fullname" .) (include "haproxy-log-exporter.namespace" .) (int .Values.service.ports.spoe) }}
{{- else }}
{{- printf "127.0.0.1:%d" (int .Values.spoe.port) }}
{{- end }}
{{- end }}

{{- define "haproxy-log-exporter.spoeFrontend" -}}
{{- /* Without the block's indentation: the charts indent their snippets. */}}
{{- regexReplaceAll "(?m)^    " (.Files.Get "files/hle-spoe-frontend.cfg" | trimSuffix "\n") "" }}
{{- end }}

{{- define "haproxy-log-exporter.spoeBackend" -}}
{{- $cfg := .Files.Get "files/hle-spoe-backend.cfg" | trimSuffix "\n" }}
{{- if not (regexMatch "(?m)^\\s*server hle1 \\S+" $cfg) }}
{{- fail "files/hle-spoe-backend.cfg has no `server hle1 ADDRESS` line" }}
{{- end }}
{{- regexReplaceAll "(?m)^(\\s*server hle1 )\\S+" $cfg (printf "${1}%s" (include "haproxy-log-exporter.spoeAgentAddress" .)) }}
{{- end }}

{{/*
The ConfigMap volume of the engine file, as an item of a pod's volumes, and
its mount in the HAProxy container.
*/}}
{{- define "haproxy-log-exporter.spoeVolume" -}}
- name: {{ .Values.spoe.volumeName }}
  configMap:
    name: {{ include "haproxy-log-exporter.spoeConfigMapName" . }}
    items:
      - key: hle-spoe.conf
        path: hle-spoe.conf
{{- end }}

{{- define "haproxy-log-exporter.spoeVolumeMount" -}}
- name: {{ .Values.spoe.volumeName }}
  mountPath: /etc/haproxy/hle-spoe.conf
  subPath: hle-spoe.conf
  readOnly: true
{{- end }}

{{/*
A label selector for PromQL: `{a="1",b="2"}` from a list of matchers (empty
ones left out), or nothing when there is none.
*/}}
{{- define "haproxy-log-exporter.promSelector" -}}
{{- $m := list }}
{{- range . }}{{ if . }}{{ $m = append $m . }}{{ end }}{{ end }}
{{- if $m }}{{ printf "{%s}" (join ", " $m) }}{{ end }}
{{- end }}
