#!/usr/bin/env bash
# The cost of forwarding: the same work with and without the forwarding sinks, in the
# same run, alternately, best of $RUNS.
#
#   replay of the 1M-line corpus: no forwarding; standard output JSON (to /dev/null);
#   TCP to a syslog receiver on loopback (octet counting, RFC 5424); both;
#   TCP ingest over one connection (examples/loadgen.rs, 10 s): without, and with both.
#
# Each line prints wall and CPU seconds and lines/s. The receiver is a small Python
# program that reads and discards; it is not what is measured.
#
# Usage: bench/forward.sh   Environment: RUNS (3), LINES (1000000), SECONDS_TCP (10)

set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
lines=${LINES:-1000000}

cargo build --release --quiet --bin haproxy-log-exporter --example loadgen
exporter=target/release/haproxy-log-exporter
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
target/release/examples/loadgen corpus --lines "$lines" >"$work/corpus.log"

# A syslog receiver that discards; it prints its port, then the bytes it read at the end.
cat >"$work/receiver.py" <<'PY'
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    while c.recv(1 << 20):
        pass
    c.close()
PY
python3 "$work/receiver.py" >"$work/port" &
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")

TIMEFORMAT='%R %U %S'
replay() {
    local name=$1; shift
    local best="" best_cpu=""
    for _ in $(seq "$runs"); do
        local t
        t=$( { time env "$@" "$exporter" replay "$work/corpus.log" >/dev/null 2>"$work/err"; } 2>&1 )
        read -r wall user sys <<<"$t"
        local cpu
        cpu=$(echo "$user + $sys" | bc)
        if [ -z "$best" ] || [ "$(echo "$wall < $best" | bc)" = 1 ]; then best=$wall; best_cpu=$cpu; fi
    done
    printf '%-34s wall %6.3f s  CPU %6.3f s  %9.0f lines/s\n' "$name" "$best" "$best_cpu" \
        "$(echo "$lines / $best" | bc -l)"
}

echo "== replay, $lines lines, best of $runs"
replay "no forwarding" HLE_SYSLOG_UDP_ADDR=
replay "stdout json" HLE_FORWARD_STDOUT=json
replay "tcp rfc5424 octet-count" HLE_FORWARD_SYSLOG_ADDR="tcp://127.0.0.1:$port"
replay "stdout json + tcp" HLE_FORWARD_STDOUT=json HLE_FORWARD_SYSLOG_ADDR="tcp://127.0.0.1:$port"
grep -h "forwarding stopped" "$work/err" || true

echo
echo "== TCP ingest, one connection, ${SECONDS_TCP:-10} s"
loadgen=(target/release/examples/loadgen send --exporter "$exporter" --transport tcp --framing lf
    --rate 0 --duration "${SECONDS_TCP:-10}")
echo "-- no forwarding"
"${loadgen[@]}" | grep -E "received|exporter_cpu"
echo "-- stdout json + tcp"
"${loadgen[@]}" --env HLE_FORWARD_STDOUT=json --env HLE_FORWARD_SYSLOG_ADDR="tcp://127.0.0.1:$port" \
    | grep -E "received|exporter_cpu"
