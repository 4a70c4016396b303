#!/usr/bin/env bash
# The SPOE agent under load, median of $RUNS runs for every figure.
#
# (a) The agent alone: the exporter pinned to one core (HLE_SPOE_ADDR on, no syslog
#     listener), examples/spoeload.rs playing HAProxy on the other core (4 connections,
#     20 NOTIFYs in flight each, hle-request and hle-response alternately). Prints NOTIFY
#     messages/s on one core, the ACK round trip seen by the client (p50 ... max), the
#     exporter's CPU seconds per 1M messages, and checks that the exporter's
#     haproxy_log_exporter_spoe_messages_counted_total equals the response messages sent.
# (b) A real HAProxy 2.6 (/usr/sbin/haproxy, one thread) in front of a second HAProxy
#     `listen` answering 200 itself, driven by wrk: without the SPOE filter; with the
#     shipped blocks of deploy/spoe/haproxy.cfg and deploy/spoe/spoe.conf and the agent
#     running; with the agent down (its server DOWN: continue-on-error, requests served).
#     Prints requests/s and wrk's latency percentiles for each, the CPU of HAProxy and of
#     the exporter, and the exporter's counted messages against HAProxy's responses.
#
# Loopback only. As root it runs in its own network namespace (unshare -n), otherwise on
# free loopback ports. Every process it starts is stopped at the end.
#
# "cpu-stall" is the share of the run some task on the machine waited for a CPU
# (/proc/pressure/cpu): above ~0.1 other work was competing and the figures are noisy.
#
# Usage: bench/spoe.sh   Environment: RUNS (3), SECONDS_A (10), SECONDS_B (20),
#   CONNECTIONS (4), INFLIGHT (20), WRK_THREADS (2), WRK_CONNECTIONS (50),
#   EXPORTER_CPU (0), LOAD_CPU (1): the cores of the exporter and HAProxy, and of the
#   load generators; PARTS ("a b"): which parts to run; WRK_PATH (/api/v1/items/42).

set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ -z "${SPOE_BENCH_NETNS:-}" ]; then
    cargo build --release --quiet --bin haproxy-log-exporter --example spoeload
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
        exec unshare -n env SPOE_BENCH_NETNS=1 "$0" "$@"
    fi
    SPOE_BENCH_NETNS=none
fi
if [ "$SPOE_BENCH_NETNS" = 1 ]; then
    ip link set lo up
fi

runs=${RUNS:-3}
seconds_a=${SECONDS_A:-10}
seconds_b=${SECONDS_B:-20}
connections=${CONNECTIONS:-4}
inflight=${INFLIGHT:-20}
wrk_threads=${WRK_THREADS:-2}
wrk_connections=${WRK_CONNECTIONS:-50}
cpu_exporter=${EXPORTER_CPU:-0}
cpu_load=${LOAD_CPU:-1}
parts=${PARTS:-a b}
wrk_path=${WRK_PATH:-/api/v1/items/42}
exporter=$root/target/release/haproxy-log-exporter
spoeload=$root/target/release/examples/spoeload
haproxy=/usr/sbin/haproxy

work=$(mktemp -d)
exporter_pid= haproxy_pid=
cleanup() {
    # Only the processes this script started and has not stopped yet.
    for p in $exporter_pid $haproxy_pid; do kill "$p" 2>/dev/null || true; done
    for p in $exporter_pid $haproxy_pid; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
spoe_port=$(free_port)
web_port=$(free_port)
metrics_url=http://127.0.0.1:$web_port/metrics

# The middle value of its arguments (numbers).
median() {
    printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"
}
# The value of `name value` line $1 in file $2.
field() {
    awk -v n="$1" '$1 == n && !done { print $2; done = 1 }' "$2"
}
metric() {
    curl -sf "$metrics_url" | awk -v n="$1" '$1 == n && !done { print $2; done = 1 }'
}
cpu_of() {
    # utime + stime in seconds (fields 14 and 15, after the command name).
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}
# Microseconds that some runnable task waited for a CPU (PSI), machine-wide; the share
# over a run says how noisy the machine was (0 when /proc/pressure is missing).
psi_cpu() {
    awk '/^some/ { sub(/.*total=/, ""); print; exit }' /proc/pressure/cpu 2>/dev/null || echo 0
}
wait_for() {
    # wait_for SECONDS COMMAND...: until the command succeeds.
    local until=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$until" ] || { echo "timed out waiting for: $*" >&2; return 1; }
        sleep 0.1
    done
}

start_exporter() {
    env -i PATH="$PATH" HLE_SPOE_ADDR="127.0.0.1:$spoe_port" HLE_SYSLOG_UDP_ADDR= \
        HLE_SYSLOG_TCP_ADDR= HLE_WEB_LISTEN_ADDR="127.0.0.1:$web_port" HLE_LOG_LEVEL=warn \
        taskset -c "$cpu_exporter" "$exporter" 2>>"$work/exporter.log" &
    exporter_pid=$!
    wait_for 10 curl -sf "$metrics_url" || { tail -5 "$work/exporter.log" >&2; return 1; }
}
stop_exporter() {
    kill "$exporter_pid" 2>/dev/null || true
    wait "$exporter_pid" 2>/dev/null || true
    exporter_pid=
}

# ---------------------------------------------------------------------------------------
if [[ " $parts " == *" a "* ]]; then
    echo "== (a) agent alone: exporter on core $cpu_exporter, spoeload on core $cpu_load," \
        "$connections connections x $inflight in flight, $seconds_a s, $runs runs"
    rate=() p50=() p90=() p99=() p999=() pmax=() cpu1m=() share=() selfshare=() srvmean=()
    for run in $(seq "$runs"); do
        start_exporter
        out=$work/spoeload.$run
        status=0 psi0=$(psi_cpu)
        taskset -c "$cpu_load" "$spoeload" --addr "127.0.0.1:$spoe_port" --pid "$exporter_pid" \
            --duration "$seconds_a" --connections "$connections" --inflight "$inflight" \
            >"$out" 2>"$out.err" || status=$?
        psi=$(echo "$(psi_cpu) $psi0 $(field elapsed_s "$out")" | awk '{ printf "%.2f", $3 ? ($1 - $2) / 1e6 / $3 : 0 }')
        counted=$(metric haproxy_log_exporter_spoe_messages_counted_total)
        routed=$(metric haproxy_log_exporter_spoe_messages_routed_total)
        ack_sum=$(metric haproxy_log_exporter_spoe_ack_duration_seconds_sum)
        ack_count=$(metric haproxy_log_exporter_spoe_ack_duration_seconds_count)
        stop_exporter
        responses=$(field responses_sent "$out")
        requests=$(field requests_sent "$out")
        check=ok
        if [ "$counted" != "$responses" ] || [ "$routed" != "$requests" ]; then check=MISMATCH; fi
        mean=$(echo "$ack_sum $ack_count" | awk '{ printf "%.1f", $2 ? $1 / $2 * 1e6 : 0 }')
        printf 'run %d: %8s msg/s  ack us p50 %s p90 %s p99 %s p99.9 %s max %s  exporter CPU %s s/1M msgs (%s of a core)  errors %s  counted %s/%s responses, routed %s/%s requests: %s  cpu-stall %s\n' \
            "$run" "$(field messages_per_s "$out")" "$(field ack_p50_us "$out")" \
            "$(field ack_p90_us "$out")" "$(field ack_p99_us "$out")" \
            "$(field ack_p999_us "$out")" "$(field ack_max_us "$out")" \
            "$(field exporter_cpu_s_per_1m "$out")" "$(field exporter_cpu_share "$out")" \
            "$(field errors "$out")" "$counted" "$responses" "$routed" "$requests" "$check" "$psi"
        if [ "$status" != 0 ] || [ "$check" != ok ]; then
            echo "   spoeload exit status $status; $(grep errors_detail "$out" || true)"
            sed 's/^/   /' "$out.err"
        fi
        rate+=("$(field messages_per_s "$out")")
        p50+=("$(field ack_p50_us "$out")") p90+=("$(field ack_p90_us "$out")")
        p99+=("$(field ack_p99_us "$out")") p999+=("$(field ack_p999_us "$out")")
        pmax+=("$(field ack_max_us "$out")")
        cpu1m+=("$(field exporter_cpu_s_per_1m "$out")") share+=("$(field exporter_cpu_share "$out")")
        selfshare+=("$(field spoeload_cpu_share "$out")") srvmean+=("$mean")
    done
    echo "median: $(median "${rate[@]}") NOTIFY messages/s on one core"
    echo "median: ACK round trip (client side) p50 $(median "${p50[@]}") us, p90 $(median "${p90[@]}") us," \
        "p99 $(median "${p99[@]}") us, p99.9 $(median "${p999[@]}") us, max $(median "${pmax[@]}") us"
    echo "median: agent-side ACK time (ack_duration_seconds mean) $(median "${srvmean[@]}") us"
    echo "median: exporter $(median "${cpu1m[@]}") CPU s per 1M messages, $(median "${share[@]}") of its core busy;" \
        "spoeload used $(median "${selfshare[@]}") of its core"
    echo
fi

# ---------------------------------------------------------------------------------------
if [[ " $parts " == *" b "* ]]; then
    command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
    fe_port=$(free_port) app_port=$(free_port) stats_port=$(free_port)
    cp deploy/spoe/spoe.conf "$work/hle-spoe.conf"
    frontend_block=$(sed -n '/# BEGIN haproxy-log-exporter frontend/,/# END haproxy-log-exporter frontend/p' \
        deploy/spoe/haproxy.cfg | sed "s#/etc/haproxy/hle-spoe.conf#$work/hle-spoe.conf#")
    backend_block=$(sed -n '/# BEGIN haproxy-log-exporter backend/,/# END haproxy-log-exporter backend/p' \
        deploy/spoe/haproxy.cfg | sed "s#127.0.0.1:12345#127.0.0.1:$spoe_port#")
    [ -n "$frontend_block" ] && [ -n "$backend_block" ] || { echo "no BEGIN/END blocks in deploy/spoe/haproxy.cfg" >&2; exit 1; }
    write_config() {
        # write_config FILE with-spoe(0|1)
        {
            cat <<EOF
global
    nbthread 1
    maxconn 4000

defaults
    mode http
    timeout connect 5s
    timeout client  30s
    timeout server  30s

frontend www
    bind 127.0.0.1:$fe_port
EOF
            [ "$2" = 1 ] && printf '%s\n' "$frontend_block"
            cat <<EOF
    default_backend app

backend app
    server app1 127.0.0.1:$app_port

# The server: answers every request itself.
listen appserver
    bind 127.0.0.1:$app_port
    http-request return status 200 content-type text/plain string "ok"

listen stats
    bind 127.0.0.1:$stats_port
    stats enable
    stats uri /stats
EOF
            [ "$2" = 1 ] && printf '%s\n' "$backend_block"
        } >"$1"
        "$haproxy" -c -f "$1" >/dev/null
    }
    write_config "$work/plain.cfg" 0
    write_config "$work/spoe.cfg" 1

    stats_csv() { curl -sf "http://127.0.0.1:$stats_port/stats;csv"; }
    # stat PROXY SERVER FIELD: one field of HAProxy's CSV statistics.
    stat() {
        stats_csv | awk -F, -v px="$1" -v sv="$2" -v f="$3" '
            NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
            $1 == px && $2 == sv && !done { print $col[f]; done = 1 }'
    }
    responses_of_www() {
        local total=0 f
        for f in hrsp_1xx hrsp_2xx hrsp_3xx hrsp_4xx hrsp_5xx hrsp_other; do
            total=$((total + $(stat www FRONTEND "$f")))
        done
        echo "$total"
    }
    start_haproxy() {
        taskset -c "$cpu_exporter" "$haproxy" -db -f "$1" >>"$work/haproxy.log" 2>&1 &
        haproxy_pid=$!
            wait_for 10 curl -sf "http://127.0.0.1:$fe_port/" || { tail -5 "$work/haproxy.log" >&2; return 1; }
    }
    stop_haproxy() {
        kill "$haproxy_pid" 2>/dev/null || true
        wait "$haproxy_pid" 2>/dev/null || true
        haproxy_pid=
    }
    to_ms() {
        awk '{ v = $1; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; printf "%.3f", v }' <<<"$1"
    }

    echo "== (b) HAProxy 2.6 (1 thread) + exporter on core $cpu_exporter, wrk -t$wrk_threads -c$wrk_connections" \
        "-d${seconds_b}s on core $cpu_load, GET $wrk_path, $runs runs each, interleaved"
    modes=(plain spoe down)
    declare -A r_rps r_p50 r_p75 r_p90 r_p99 r_hcpu r_ecpu
    for run in $(seq "$runs"); do
        for mode in "${modes[@]}"; do
            cfg=$work/spoe.cfg
            [ "$mode" = plain ] && cfg=$work/plain.cfg
            [ "$mode" = spoe ] && start_exporter
            start_haproxy "$cfg"
            if [ "$mode" = down ]; then
                # Wait for the health check to mark the agent DOWN (fall 3 x inter 2s).
                wait_for 30 bash -c "curl -sf 'http://127.0.0.1:$stats_port/stats;csv' | grep -q '^hle-spoe,hle1,.*,DOWN'"
            fi
            # Warm up: opens the agent connections.
            taskset -c "$cpu_load" wrk -t1 -c"$wrk_connections" -d1s "http://127.0.0.1:$fe_port$wrk_path" >/dev/null
            h0=$(cpu_of "$haproxy_pid") psi0=$(psi_cpu)
            e0=0; [ -n "$exporter_pid" ] && e0=$(cpu_of "$exporter_pid")
            out=$work/wrk.$mode.$run
            taskset -c "$cpu_load" wrk -t"$wrk_threads" -c"$wrk_connections" -d"${seconds_b}s" --latency \
                "http://127.0.0.1:$fe_port$wrk_path" >"$out"
            h1=$(cpu_of "$haproxy_pid") psi1=$(psi_cpu)
            e1=0; [ -n "$exporter_pid" ] && e1=$(cpu_of "$exporter_pid")
            responses=$(responses_of_www)
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
            lat() { to_ms "$(awk -v p="$1" '$1 == p && !done { print $2; done = 1 }' "$out")"; }
            p50=$(lat 50%) p75=$(lat 75%) p90=$(lat 90%) p99=$(lat 99%)
            hcpu=$(echo "$h0 $h1 $seconds_b" | awk '{ printf "%.2f", ($2 - $1) / $3 }')
            ecpu=$(echo "$e0 $e1 $seconds_b" | awk '{ printf "%.2f", ($2 - $1) / $3 }')
            psi=$(echo "$psi0 $psi1 $seconds_b" | awk '{ printf "%.2f", ($2 - $1) / 1e6 / $3 }')
            errs=$(grep -E "Socket errors|Non-2xx" "$out" | tr -s ' ' | paste -sd';' || true)
            line=$(printf 'run %d %-5s %9s req/s  latency ms p50 %s p75 %s p90 %s p99 %s  CPU haproxy %s exporter %s  cpu-stall %s' \
                "$run" "$mode" "$rps" "$p50" "$p75" "$p90" "$p99" "$hcpu" "$ecpu" "$psi")
            if [ "$mode" = spoe ]; then
                counted=$(metric haproxy_log_exporter_spoe_messages_counted_total)
                routed=$(metric haproxy_log_exporter_spoe_messages_routed_total)
                rejected=$(curl -sf "$metrics_url" | awk '/^haproxy_log_exporter_spoe_messages_rejected_total/ { s += $2 } END { print s + 0 }')
                reqs=$(stat www FRONTEND req_tot)
                line="$line  counted $counted / $responses HAProxy responses, routed $routed / $reqs requests, rejected $rejected"
                stop_exporter
            else
                line="$line  HAProxy responses $responses"
            fi
            stop_haproxy
            echo "$line${errs:+  wrk: $errs}"
            r_rps[$mode]+="$rps " r_p50[$mode]+="$p50 " r_p75[$mode]+="$p75 " r_p90[$mode]+="$p90 "
            r_p99[$mode]+="$p99 " r_hcpu[$mode]+="$hcpu " r_ecpu[$mode]+="$ecpu "
        done
    done
    for mode in "${modes[@]}"; do
        # shellcheck disable=SC2086 # word splitting wanted
        printf 'median %-5s %9s req/s  latency ms p50 %s p75 %s p90 %s p99 %s  CPU haproxy %s exporter %s\n' "$mode" \
            "$(median ${r_rps[$mode]})" "$(median ${r_p50[$mode]})" "$(median ${r_p75[$mode]})" \
            "$(median ${r_p90[$mode]})" "$(median ${r_p99[$mode]})" "$(median ${r_hcpu[$mode]})" \
            "$(median ${r_ecpu[$mode]})"
    done
fi
if [ -s "$work/exporter.log" ]; then
    echo "exporter warnings:"; sort "$work/exporter.log" | uniq -c | sort -rn | head -5
fi
