{{/*
The alert rules, as the `groups` of a Prometheus rule file. The PrometheusRule
object carries them; deploy/prometheus/haproxy-log-exporter.rules.yml is the
same list rendered with the default values, for Prometheus without the
operator.

Traffic alerts sum over pods and replicas by `prometheusRule.groupBy` and
`backend_name`, and ignore backends with too little traffic to judge. They need
the exporter's default labels (which `metrics.labels` can change): `status_class`
and `backend_name` on haproxy_log_requests_total, `backend_name` on
haproxy_log_response_processing_seconds. The response time alert reads the native
histogram where Prometheus stores one (HLE_NATIVE_HISTOGRAMS), else the classic
buckets.
*/}}
{{- define "haproxy-log-exporter.ruleGroups" -}}
{{- $r := .Values.prometheusRule }}
{{- $a := $r.alerts }}
{{- $w := $r.rateWindow }}
{{- $sel := $r.metricSelector }}
{{- $by := join ", " (concat $r.groupBy (list "backend_name")) }}
{{- $byExporter := join ", " (uniq (concat $r.groupBy (list "pod" "instance"))) }}
{{- $requests := printf "haproxy_log_requests_total%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $requests5xx := printf "haproxy_log_requests_total%s" (include "haproxy-log-exporter.promSelector" (list "status_class=\"5xx\"" $sel)) }}
{{- $trNative := printf "haproxy_log_response_processing_seconds%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $tr := printf "haproxy_log_response_processing_seconds_bucket%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $trCount := printf "haproxy_log_response_processing_seconds_count%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $rejected := printf "haproxy_log_exporter_lines_rejected_total%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $received := printf "haproxy_log_exporter_lines_received_total%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $drops := printf "haproxy_log_exporter_udp_receive_drops_total%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $overflow := printf "haproxy_log_exporter_series_overflow_total%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $fwdDropped := printf "haproxy_log_exporter_forward_dropped_lines_total%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $fwdConnected := printf "haproxy_log_exporter_forward_connected%s" (include "haproxy-log-exporter.promSelector" (list $sel)) }}
{{- $up := printf "up%s" (include "haproxy-log-exporter.promSelector" (list (printf "container=%q" .Values.containerName) $sel)) }}
{{- $extra := $r.additionalRuleLabels }}
- name: haproxy-log-exporter
  {{- with $r.evaluationInterval }}
  interval: {{ . }}
  {{- end }}
  rules:
    {{- if $a.backend5xxRatio.enabled }}
    - alert: HAProxyLogBackend5xxRatioHigh
      expr: |-
        (
          sum by ({{ $by }}) (rate({{ $requests5xx }}[{{ $w }}]))
        /
          sum by ({{ $by }}) (rate({{ $requests }}[{{ $w }}]))
        ) > {{ $a.backend5xxRatio.threshold }}
        and on ({{ $by }})
          sum by ({{ $by }}) (rate({{ $requests }}[{{ $w }}])) >= {{ $a.backend5xxRatio.minRequestRate }}
      for: {{ $a.backend5xxRatio.for }}
      labels:
        severity: {{ $a.backend5xxRatio.severity }}
        {{- with $extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: HAProxy backend {{`{{ $labels.backend_name }}`}} answers too many 5xx
        description: >-
          {{`{{ $value | humanizePercentage }}`}} of the responses of backend
          {{`{{ $labels.backend_name }}`}} ({{`{{ $labels.namespace }}`}}/{{`{{ $labels.job }}`}})
          were 5xx over the last {{ $w }} (threshold {{ $a.backend5xxRatio.threshold }}).
          haproxy_log_requests_total by status_code and server_name shows which
          statuses and servers.
    {{- end }}
    {{- if $a.backendResponseTime.enabled }}
    - alert: HAProxyLogBackendResponseTimeHigh
      expr: |-
        (
          histogram_quantile({{ $a.backendResponseTime.quantile }},
            sum by ({{ $by }}) (rate({{ $trNative }}[{{ $w }}]))
          )
          or
          histogram_quantile({{ $a.backendResponseTime.quantile }},
            sum by ({{ $by }}, le) (rate({{ $tr }}[{{ $w }}]))
          )
        ) > {{ $a.backendResponseTime.thresholdSeconds }}
        and on ({{ $by }})
          (
            sum by ({{ $by }}) (histogram_count(rate({{ $trNative }}[{{ $w }}])))
            or
            sum by ({{ $by }}) (rate({{ $trCount }}[{{ $w }}]))
          ) >= {{ $a.backendResponseTime.minRequestRate }}
      for: {{ $a.backendResponseTime.for }}
      labels:
        severity: {{ $a.backendResponseTime.severity }}
        {{- with $extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: HAProxy backend {{`{{ $labels.backend_name }}`}} responds slowly
        description: >-
          The {{ $a.backendResponseTime.quantile }} quantile of the response time (Tr) of
          backend {{`{{ $labels.backend_name }}`}} ({{`{{ $labels.namespace }}`}}/{{`{{ $labels.job }}`}})
          is {{`{{ $value | humanizeDuration }}`}} over the last {{ $w }}
          (threshold {{ $a.backendResponseTime.thresholdSeconds }}s).
    {{- end }}
    {{- if $a.rejectedLines.enabled }}
    - alert: HAProxyLogExporterRejectingLines
      expr: |-
        sum by ({{ $byExporter }}) (rate({{ $rejected }}[{{ $w }}]))
        /
        sum by ({{ $byExporter }}) (rate({{ $received }}[{{ $w }}]))
        > {{ $a.rejectedLines.threshold }}
      for: {{ $a.rejectedLines.for }}
      labels:
        severity: {{ $a.rejectedLines.severity }}
        {{- with $extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: haproxy-log-exporter rejects log lines
        description: >-
          {{`{{ $value | humanizePercentage }}`}} of the lines {{`{{ $labels.instance }}`}}
          received over the last {{ $w }} could not be counted: HAProxy's log format
          and the exporter's configuration (HLE_LOG_FORMAT) probably disagree,
          or (reason no_log_format) a frontend has a log target but no
          option httplog / option tcplog, and HAProxy logs only its connections.
          haproxy_log_exporter_lines_rejected_total has the reason, the exporter's
          log the first bytes of the lines and the fix.
    {{- end }}
    {{- if $a.udpDrops.enabled }}
    - alert: HAProxyLogExporterUDPDrops
      expr: |-
        sum by ({{ $byExporter }}) (increase({{ $drops }}[{{ $w }}])) > 0
      for: {{ $a.udpDrops.for }}
      labels:
        severity: {{ $a.udpDrops.severity }}
        {{- with $extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: syslog datagrams to haproxy-log-exporter are dropped
        description: >-
          The kernel dropped {{`{{ $value | humanize }}`}} datagrams for {{`{{ $labels.instance }}`}}
          over the last {{ $w }}: its UDP receive buffer was full, so counts are
          missing. Raise HLE_UDP_RECV_BUFFER_BYTES (and net.core.rmem_max), give
          the exporter more CPU, or log over TCP through a ring.
    {{- end }}
    {{- if $a.seriesOverflow.enabled }}
    - alert: HAProxyLogExporterSeriesOverflow
      expr: |-
        sum by ({{ $byExporter }}, metric) (increase({{ $overflow }}[{{ $w }}])) > 0
      for: {{ $a.seriesOverflow.for }}
      labels:
        severity: {{ $a.seriesOverflow.severity }}
        {{- with $extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: haproxy-log-exporter folds new series into an overflow series
        description: >-
          {{`{{ $labels.metric }}`}} on {{`{{ $labels.instance }}`}} has reached
          HLE_MAX_SERIES_PER_METRIC: {{`{{ $value | humanize }}`}} lines over the last {{ $w }}
          were counted in its overflow series (label values "__overflow__"). A
          label with unbounded values (paths with IDs, client addresses) is the
          usual cause: see HLE_PATH_RULES and the metric's HLE_<METRIC>_LABELS.
    {{- end }}
    {{- if $a.forwardDropping.enabled }}
    - alert: HAProxyLogExporterForwardDropping
      expr: |-
        sum by ({{ $byExporter }}, sink, reason) (increase({{ $fwdDropped }}[{{ $w }}])) > 0
      for: {{ $a.forwardDropping.for }}
      labels:
        severity: {{ $a.forwardDropping.severity }}
        {{- with $extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: haproxy-log-exporter drops lines it should forward
        description: >-
          The {{`{{ $labels.sink }}`}} sink of {{`{{ $labels.instance }}`}} dropped
          {{`{{ $value | humanize }}`}} lines over the last {{ $w }} ({{`{{ $labels.reason }}`}}):
          the access log it ships on has gaps. queue_full: the destination is slower
          than the traffic or unreachable (see HAProxyLogExporterForwardDisconnected);
          raise HLE_FORWARD_BUFFER_LINES and HLE_FORWARD_BUFFER_BYTES or sample with
          HLE_FORWARD_SAMPLE_RATE. connection_lost: lines written to a connection
          that then failed. shutdown: lines still queued when HLE_FORWARD_SHUTDOWN_GRACE
          ran out. oversize: a line longer than the whole queue.
    {{- end }}
    {{- if $a.forwardDisconnected.enabled }}
    - alert: HAProxyLogExporterForwardDisconnected
      expr: |-
        max by ({{ $byExporter }}, sink) ({{ $fwdConnected }}) == 0
      for: {{ $a.forwardDisconnected.for }}
      labels:
        severity: {{ $a.forwardDisconnected.severity }}
        {{- with $extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: haproxy-log-exporter cannot deliver the lines it forwards
        description: >-
          The {{`{{ $labels.sink }}`}} sink of {{`{{ $labels.instance }}`}}
          ({{`{{ $labels.namespace }}`}}/{{`{{ $labels.pod }}`}}) has not been able to
          deliver for {{ $a.forwardDisconnected.for }}: the syslog server of
          HLE_FORWARD_SYSLOG_ADDR refuses or does not answer (the exporter keeps
          reconnecting), or standard output is blocked. Lines wait in the sink's
          queue and are dropped once it is full
          (haproxy_log_exporter_forward_queue_lines and _bytes).
    {{- end }}
    {{- if $a.exporterDown.enabled }}
    - alert: HAProxyLogExporterDown
      expr: |-
        {{ $up }} == 0
      for: {{ $a.exporterDown.for }}
      labels:
        severity: {{ $a.exporterDown.severity }}
        {{- with $extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: haproxy-log-exporter cannot be scraped
        description: >-
          Prometheus has failed to scrape {{`{{ $labels.instance }}`}}
          ({{`{{ $labels.namespace }}`}}/{{`{{ $labels.pod }}`}}) for {{ $a.exporterDown.for }}:
          HAProxy's traffic there is not counted.
    {{- end }}
    {{- with $r.additionalRules }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
