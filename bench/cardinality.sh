#!/usr/bin/env bash
# Series count, memory and scrape time of a running exporter after LINES lines (default
# 1000000) sent over one TCP connection, in three configurations:
#
#   a) default labels, realistic traffic;
#   b) http_request_path, http_request_method, status_code and server_name on the two
#      request counters and every histogram, realistic traffic;
#   c) the labels of b) plus client_ip on haproxy_log_requests_total, and an attack: every
#      line has a random path and a random client address; the default series cap.
#
# Then a second table: one histogram, haproxy_log_response_processing_seconds, by
# http_request_path alone, on 10000 distinct paths (a cap that keeps them all), classic
# against HLE_NATIVE_HISTOGRAMS=on and only, each scraped in the text format and, for the
# native ones, in the protobuf format Prometheus asks for with native histograms on.
#
# Prints one Markdown table row per configuration: series in the exposition, series
# folded (lines sent to overflow series), resident memory (VmRSS and its peak VmHWM),
# the exposition's size, the fastest of three scrapes, and promtool's verdict.
#
# Usage: bench/cardinality.sh            (from the repository; needs curl, awk, bash)
#        LINES=200000 bench/cardinality.sh
# Only loopback is used; the exporter is stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LINES=${LINES:-1000000}
WAIT_SECONDS=${WAIT_SECONDS:-300}

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
for tool in curl awk; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

cargo build --release --quiet --bin haproxy-log-exporter --example loadgen
exporter=target/release/haproxy-log-exporter
loadgen=target/release/examples/loadgen

work=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "generating $LINES lines of each corpus..." >&2
"$loadgen" corpus --lines "$LINES" --path-ids 1000 >"$work/realistic.log"
# Random lower-case paths (no template folds them) and random client addresses.
awk -v n="$LINES" 'BEGIN {
    srand(42)
    for (i = 0; i < n; i++) {
        path = ""
        for (s = 0; s < 3; s++) {
            word = ""
            for (k = 0; k < 6; k++) word = word sprintf("%c", 97 + int(rand() * 26))
            path = path "/" word
        }
        printf "<134>Nov 25 10:00:00 haproxy[1234]: %d.%d.%d.%d:%d [25/Nov/2026:10:00:00.000] fe_main be_app/app%d 0/0/1/%d/%d %d 512 - - ---- 1/1/0/0/0 0/0 \"GET %s?q=%d HTTP/1.1\"\n",
            1 + int(rand() * 223), int(rand() * 256), int(rand() * 256), 1 + int(rand() * 254),
            1024 + int(rand() * 60000), 1 + int(rand() * 4), int(rand() * 900), 1000,
            (rand() < 0.9 ? 200 : 404), path, i
    }
}' >"$work/attack.log"

heavy=http_request_path,http_request_method,status_code,server_name
heavy_env=()
for metric in REQUESTS_TOTAL BYTES_READ_TOTAL REQUEST_WAIT_SECONDS REQUEST_QUEUED_SECONDS \
    SERVER_TCP_CONNECTION_ESTABLISH_SECONDS RESPONSE_PROCESSING_SECONDS \
    SESSION_DURATION_SECONDS BACKEND_QUEUE_LENGTH SERVER_QUEUE_LENGTH; do
    heavy_env+=("HLE_${metric}_LABELS=$heavy")
done

# value NAME FILE: the sum of the samples of metric NAME in the exposition FILE.
value() {
    awk -v name="$1" '$1 == name || index($1, name "{") == 1 { sum += $NF } END { printf "%d", sum }' "$2"
}

run() {
    local name=$1 corpus=$2
    shift 2
    local log="$work/$name.err"
    env -i PATH="$PATH" HLE_SYSLOG_UDP_ADDR= HLE_SYSLOG_TCP_ADDR=127.0.0.1:0 \
        HLE_WEB_LISTEN_ADDR=127.0.0.1:0 HLE_LOG_OUTPUT=json "$@" \
        "$exporter" 2>"$log" &
    pid=$!
    local tcp= web= i
    for ((i = 0; i < 100; i++)); do
        if grep -q '"listening"' "$log" 2>/dev/null; then break; fi
        sleep 0.1
    done
    tcp=$(grep -o '"tcp":"[^"]*"' "$log" | head -n 1 | cut -d'"' -f4)
    web=$(grep -o '"web":"[^"]*"' "$log" | head -n 1 | cut -d'"' -f4)
    [[ -n $tcp && -n $web ]] || die "$name: the exporter did not start: $(cat "$log")"

    local start=$SECONDS
    # bash's /dev/tcp: one connection, newline framing.
    cat "$corpus" >"/dev/tcp/${tcp%:*}/${tcp##*:}"
    local counted=0
    while ((SECONDS - start < WAIT_SECONDS)); do
        curl -sf "http://$web/metrics" -o "$work/metrics.txt" || true
        counted=$(value haproxy_log_exporter_lines_counted_total "$work/metrics.txt")
        ((counted >= LINES)) && break
        sleep 0.5
    done
    ((counted >= LINES)) || die "$name: only $counted of $LINES lines counted in ${WAIT_SECONDS}s"

    cp "$work/metrics.txt" "$work/text.txt"
    local best=999 t
    for i in 1 2 3; do
        t=$(curl -sf -H "Accept: ${ACCEPT:-*/*}" "http://$web/metrics" -o "$work/metrics.txt" -w '%{time_total}')
        best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (b < a ? b : a) }')
    done
    local rss hwm series folded bytes verdict=skipped
    rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
    series=$(grep -v '^haproxy_log_exporter_' "$work/metrics.txt" | grep -c '^haproxy_log_' || true)
    folded=$(value haproxy_log_exporter_series_overflow_total "$work/text.txt")
    bytes=$(wc -c <"$work/metrics.txt")
    if [[ -n ${ACCEPT:-} ]]; then
        series=-
        verdict=n/a
    elif command -v promtool >/dev/null; then
        if promtool check metrics <"$work/metrics.txt" >/dev/null 2>&1; then verdict=valid; else verdict=INVALID; fi
    fi
    printf '| %s | %d | %s | %s | %s MiB | %s MiB | %d KiB | %.0f ms | %s |\n' \
        "$name" "$counted" "$series" "$folded" "$rss" "$hwm" "$((bytes / 1024))" \
        "$(awk -v t="$best" 'BEGIN { print t * 1000 }')" "$verdict"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}

echo "| configuration | lines counted | sample lines | overflow_total, all metrics | RSS | peak RSS | exposition | scrape | promtool |"
echo "|---|---|---|---|---|---|---|---|---|"
run "a) default labels" "$work/realistic.log"
run "b) path, method, status, server" "$work/realistic.log" "${heavy_env[@]}"
run "c) b) + client_ip, random paths and clients" "$work/attack.log" "${heavy_env[@]}" \
    "HLE_REQUESTS_TOTAL_LABELS=$heavy,client_ip"

# 10000 distinct paths of random words (no template folds them), each line one of them.
awk -v n="$LINES" 'BEGIN {
    srand(7)
    for (p = 0; p < 10000; p++) {
        path = ""
        for (s = 0; s < 2; s++) {
            word = ""
            for (k = 0; k < 8; k++) word = word sprintf("%c", 97 + int(rand() * 26))
            path = path "/" word
        }
        paths[p] = path
    }
    for (i = 0; i < n; i++) {
        ms = int(exp(rand() * 8))
        printf "<134>Nov 25 10:00:00 haproxy[1234]: 10.0.0.1:4000 [25/Nov/2026:10:00:00.000] fe_main be_app/app1 0/0/1/%d/%d 200 512 - - ---- 1/1/0/0/0 0/0 \"GET %s HTTP/1.1\"\n",
            ms, ms + 1, paths[i % 10000]
    }
}' >"$work/paths.log"

protobuf='application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited'
one=(HLE_ENABLED_METRICS=response_processing_seconds
    HLE_RESPONSE_PROCESSING_SECONDS_LABELS=http_request_path)
echo
echo "| configuration | lines counted | sample lines | overflow_total, all metrics | RSS | peak RSS | exposition | scrape | promtool |"
echo "|---|---|---|---|---|---|---|---|---|"
run "d) classic, 10000 paths, text" "$work/paths.log" "${one[@]}" HLE_MAX_SERIES_PER_METRIC=200000
run "e) on, 10000 paths, text" "$work/paths.log" "${one[@]}" HLE_MAX_SERIES_PER_METRIC=200000 \
    HLE_NATIVE_HISTOGRAMS=on
ACCEPT=$protobuf run "f) on, 10000 paths, protobuf" "$work/paths.log" "${one[@]}" \
    HLE_MAX_SERIES_PER_METRIC=200000 HLE_NATIVE_HISTOGRAMS=on
run "g) only, 10000 paths, text" "$work/paths.log" "${one[@]}" HLE_MAX_SERIES_PER_METRIC=20000 \
    HLE_NATIVE_HISTOGRAMS=only
ACCEPT=$protobuf run "h) only, 10000 paths, protobuf" "$work/paths.log" "${one[@]}" \
    HLE_MAX_SERIES_PER_METRIC=20000 HLE_NATIVE_HISTOGRAMS=only
