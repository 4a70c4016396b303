#!/usr/bin/env bash
# The issue's load scenarios, run against a freshly built exporter on free loopback ports
# (examples/loadgen.rs starts it, sends, reads its counters, stops it):
#
#   1. UDP at a realistic 30k lines/s, one datagram at a time as HAProxy sends them: the
#      exporter's CPU (% of one core) and RSS, with /metrics scraped every 5 s;
#   2. UDP at 300k lines/s for 30 s: must be lossless (fails otherwise);
#   3. UDP above the lossless rate (as fast as the generator can): every lost datagram
#      must be in haproxy_log_exporter_udp_receive_drops_total;
#   4. TCP over one connection as fast as the exporter reads, newline framing;
#   5. the same with octet counting (RFC 6587).
#
# Usage: bench/load.sh [SCENARIO...]   (default: all; numbers as above)
# Environment: UDP_RECV_BUFFER (default 4194304), the exporter's HLE_UDP_RECV_BUFFER_BYTES
# for scenarios 2 and 3 (the kernel caps it at net.core.rmem_max); SECONDS_30K (20),
# SECONDS_300K (30), SECONDS_TCP (10); SENDERS_300K (1), sending threads for scenario 2.
#
# One sending thread needs a core of its own at about 300k datagrams/s (loopback UDP costs
# the sender about as much as the receiver). With two cores, the generator and the
# exporter share them and the generator may fall short of 300k/s (it says so); with four
# or more, use SENDERS_300K=2.

set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(1 2 3 4 5)
buffer=${UDP_RECV_BUFFER:-4194304}

cargo build --release --quiet --bin haproxy-log-exporter --example loadgen
loadgen=(target/release/examples/loadgen send --exporter target/release/haproxy-log-exporter)

status=0
for scenario in "${scenarios[@]}"; do
    echo
    case "$scenario" in
        1)  echo "== 1. UDP, 30k lines/s, ${SECONDS_30K:-20} s: CPU and RSS"
            "${loadgen[@]}" --transport udp --rate 30000 --batch 1 --duration "${SECONDS_30K:-20}" \
                --scrape-every 5 || status=1 ;;
        2)  echo "== 2. UDP, 300k lines/s, ${SECONDS_300K:-30} s: no loss (receive buffer $buffer)"
            "${loadgen[@]}" --transport udp --rate 300000 --senders "${SENDERS_300K:-1}" --duration "${SECONDS_300K:-30}" \
                --env HLE_UDP_RECV_BUFFER_BYTES="$buffer" --max-loss-ratio 0 || status=1 ;;
        3)  echo "== 3. UDP, as fast as possible (2 senders), 10 s: losses are counted"
            out=$("${loadgen[@]}" --transport udp --rate 0 --senders 2 --duration 10 \
                --env HLE_UDP_RECV_BUFFER_BYTES="$buffer") || status=1
            echo "$out"
            if ! grep -q "lost and not in it: 0$" <<<"$out"; then
                echo "load: some lost datagrams are not in haproxy_log_exporter_udp_receive_drops_total" >&2
                status=1
            fi ;;
        4)  echo "== 4. TCP, one connection, newline framing, as fast as possible, ${SECONDS_TCP:-10} s"
            "${loadgen[@]}" --transport tcp --framing lf --rate 0 --duration "${SECONDS_TCP:-10}" \
                --max-loss-ratio 0 || status=1 ;;
        5)  echo "== 5. TCP, one connection, octet counting, as fast as possible, ${SECONDS_TCP:-10} s"
            "${loadgen[@]}" --transport tcp --framing octet --rate 0 --duration "${SECONDS_TCP:-10}" \
                --max-loss-ratio 0 || status=1 ;;
        *)  echo "load: unknown scenario $scenario (1 to 5)" >&2; exit 2 ;;
    esac
done
exit $status
