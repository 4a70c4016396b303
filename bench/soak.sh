#!/usr/bin/env bash
# Soak: the exporter for DURATION seconds (default 1800) at RATE lines/s (default 30000),
# half over UDP (one sender for the whole run) and half over TCP (a sender that
# reconnects every 10 s), with /metrics scraped every second. Samples the exporter's
# RSS every 10 s and at the end checks that every line sent was received and counted.
# Prints the RSS at the start, its lowest and highest after the first minute, at the
# end, and the counts.
#
# Usage: bench/soak.sh [DURATION] [RATE]      Loopback only; stops everything it started.
# Not part of CI (it runs for half an hour).

set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-1800}
rate=${2:-30000}
half=$((rate / 2))
cargo build --release --quiet --bin haproxy-log-exporter --example loadgen
bin=target/release/haproxy-log-exporter
gen=target/release/examples/loadgen
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Free loopback ports, chosen by the kernel.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
syslog=$(port)
web=$(port)
HLE_SYSLOG_UDP_ADDR=127.0.0.1:$syslog HLE_SYSLOG_TCP_ADDR=127.0.0.1:$syslog \
    HLE_WEB_LISTEN_ADDR=127.0.0.1:$web HLE_UDP_RECV_BUFFER_BYTES=8388608 \
    "$bin" >"$work/exporter.log" 2>&1 &
exporter=$!
pids+=("$exporter")
metrics=http://127.0.0.1:$web/metrics
for _ in $(seq 100); do curl -sf "$metrics" >/dev/null && break; sleep 0.1; done

rss() { awk '/^VmRSS/ {print $2}' "/proc/$exporter/status"; }
sample() { curl -sf "$metrics" | awk -v m="$1" '$1 ~ "^"m"(\\{|$)" {s += $2} END {printf "%d", s}'; }

start_rss=$(rss)
"$gen" send --udp 127.0.0.1:$syslog --metrics "$metrics" --rate "$half" --duration "$duration" \
    --scrape-every 1 --settle 1 >"$work/udp.out" 2>&1 &
udp=$!
pids+=("$udp")
(
    end=$((SECONDS + duration))
    seed=1
    while [ $SECONDS -lt $end ]; do
        left=$((end - SECONDS))
        "$gen" send --tcp 127.0.0.1:$syslog --metrics "$metrics" --rate "$half" \
            --duration $((left < 10 ? left : 10)) --seed $seed --settle 0 2>&1 |
            awk '$1 == "sent" {print $2}'
        seed=$((seed + 1))
    done >"$work/tcp.sent"
) &
tcp=$!
pids+=("$tcp")

low=0 high=0 t=0
while kill -0 "$udp" 2>/dev/null || kill -0 "$tcp" 2>/dev/null; do
    sleep 10
    t=$((t + 10))
    r=$(rss)
    echo "t=${t}s rss=${r} KiB received=$(sample haproxy_log_exporter_lines_received_total)" >&2
    if [ $t -ge 60 ]; then
        [ $low -eq 0 ] || [ "$r" -lt $low ] && low=$r
        [ "$r" -gt $high ] && high=$r
    fi
done
wait "$udp" || true
wait "$tcp" || true
sleep 2
udp_sent=$(awk '$1 == "sent" {print $2}' "$work/udp.out")
tcp_sent=$(awk '{s += $1} END {printf "%d", s}' "$work/tcp.sent")
sent=$((udp_sent + tcp_sent))
received=$(sample haproxy_log_exporter_lines_received_total)
counted=$(sample haproxy_log_exporter_lines_counted_total)
drops=$(sample haproxy_log_exporter_udp_receive_drops_total)
end_rss=$(rss)
printf 'duration %ss, %s lines/s (UDP %s, TCP %s reconnecting every 10 s), scraped every second\n' \
    "$duration" "$rate" "$half" "$half"
printf 'rss_kib start %s, after the first minute lowest %s highest %s, end %s\n' \
    "$start_rss" "$low" "$high" "$end_rss"
printf 'sent %s (udp %s, tcp %s), received %s, counted %s, kernel drops %s\n' \
    "$sent" "$udp_sent" "$tcp_sent" "$received" "$counted" "$drops"
if [ "$sent" -eq "$received" ] && [ "$received" -eq "$counted" ]; then
    echo "counts exact"
else
    echo "counts differ" >&2
    exit 1
fi
