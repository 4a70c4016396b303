#!/usr/bin/env bash
# A demo that needs no cluster and no container daemon: HAProxy, the exporter
# and Prometheus on this machine, with traffic, stopped together.
#
#   deploy/demo/run.sh               run until Ctrl-C
#   deploy/demo/run.sh --for 120     run for 120 seconds, then stop (headless use)
#   deploy/demo/run.sh stop          stop a demo started elsewhere (another terminal, `&`)
#
# What runs, each in a session of its own, all of it stopped on Ctrl-C, SIGTERM,
# `run.sh stop` or the end of `--for`:
#   - HAProxy with examples/haproxy.cfg (a copy with the demo's ports), logging over UDP
#     to the exporter;
#   - the exporter: $DEMO_EXPORTER if set, else target/release/haproxy-log-exporter of
#     this repository if it is built, else haproxy-log-exporter on PATH, else it is built
#     first with `cargo build --release`;
#   - Prometheus (Debian package prometheus, /usr/bin/prometheus) scraping the exporter
#     every 5 s with the alert rules of deploy/prometheus/, its data in a temporary
#     directory removed on stop;
#   - a curl loop: about 8 requests a second, a quarter of them answered 404.
#
# Environment (defaults in brackets):
#   DEMO_LISTEN_ADDR [127.0.0.1]   IPv4 address of the three ports below (0.0.0.0: all)
#   DEMO_HAPROXY_PORT [8080]       HAProxy's frontend
#   DEMO_EXPORTER_PORT [9129]      the exporter's /metrics
#   DEMO_PROMETHEUS_PORT [9090]    Prometheus' web UI and API
#   DEMO_SYSLOG_PORT [5140]        UDP, 127.0.0.1: HAProxy to the exporter
#   DEMO_APP_PORT [8404]           127.0.0.1: the backend server (HAProxy's stats frontend)
#   DEMO_EXPORTER, DEMO_HAPROXY, DEMO_PROMETHEUS   the programs to run
#   DEMO_STATE_FILE [$XDG_RUNTIME_DIR or $TMPDIR or /tmp, haproxy-log-exporter-demo-UID]
#                                  where `run.sh stop` finds the running demo
set -euo pipefail

script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$script")/../.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

listen=${DEMO_LISTEN_ADDR:-127.0.0.1}
haproxy_port=${DEMO_HAPROXY_PORT:-8080}
exporter_port=${DEMO_EXPORTER_PORT:-9129}
prometheus_port=${DEMO_PROMETHEUS_PORT:-9090}
syslog_port=${DEMO_SYSLOG_PORT:-5140}
app_port=${DEMO_APP_PORT:-8404}
state_file=${DEMO_STATE_FILE:-${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/haproxy-log-exporter-demo-$(id -u)}

die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }

usage() {
    sed -n '2,/^set -euo/p' "$script" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# The address to connect to for a listen address (0.0.0.0: every address).
connect_host() {
    if [[ $1 == 0.0.0.0 ]]; then echo 127.0.0.1; else echo "$1"; fi
}

# Percent-encoding of a query for a URL.
urlencode() {
    local LC_ALL=C s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c"; out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

# --- the traffic loop (run by the demo itself) --------------------------------
traffic_loop() {
    local base=$1 n=0 child
    # It leads its process group: on a signal, it stops the whole group and
    # reaps curl or sleep before leaving, so that nothing outlives it.
    trap 'trap "" TERM; kill -TERM 0 2>/dev/null; wait; exit 0' TERM INT HUP
    while :; do
        n=$((n + 1))
        curl -s --max-time 5 -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
            "$base/" "$base/hello" "$base/api/items/$((n % 7))" "$base/missing/$((n % 3))" &
        child=$!
        wait "$child" || true
        sleep 0.5 &
        child=$!
        wait "$child" || true
    done
}

# --- stop: a demo started elsewhere ---------------------------------------------
process_alive() {
    # Alive and not a zombie.
    local stat
    [[ -r /proc/$1/stat ]] || return 1
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

stop_demo() {
    [[ -e $state_file ]] || { say "no demo is running (no $state_file)"; return 0; }
    local pid work pgid
    read -r pid work <"$state_file" || true
    if [[ -n ${pid:-} ]] && process_alive "$pid" && grep -qa run.sh "/proc/$pid/cmdline"; then
        say "stopping the demo (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 300); do
            process_alive "$pid" || break
            sleep 0.1
        done
        process_alive "$pid" && die "the demo (pid $pid) is still running after 30 s"
    fi
    # Whatever a demo killed with SIGKILL left behind.
    if [[ ${work:-} == */haproxy-log-exporter-demo.* && -f $work/pgids ]]; then
        while read -r pgid; do
            if group_alive "$pgid"; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
        done <"$work/pgids"
        rm -rf "$work"
    fi
    rm -f "$state_file"
    say "stopped"
}

# --- arguments ------------------------------------------------------------------
run_for=""
case ${1:-} in
    "") ;;
    stop) stop_demo; exit 0 ;;
    --for)
        [[ ${2:-} =~ ^[0-9]+$ ]] || die "--for needs a number of seconds"
        run_for=$2
        ;;
    -h | --help) usage; exit 0 ;;
    __traffic) traffic_loop "$2"; exit 0 ;;
    *) usage >&2; exit 64 ;;
esac

# --- programs ---------------------------------------------------------------------
find_exporter() {
    if [[ -n ${DEMO_EXPORTER:-} ]]; then
        [[ -x $DEMO_EXPORTER ]] || die "DEMO_EXPORTER=$DEMO_EXPORTER is not an executable"
        echo "$DEMO_EXPORTER"
    elif [[ -x $repo/target/release/haproxy-log-exporter ]]; then
        echo "$repo/target/release/haproxy-log-exporter"
    elif command -v haproxy-log-exporter >/dev/null 2>&1; then
        command -v haproxy-log-exporter
    elif command -v cargo >/dev/null 2>&1; then
        say "building the exporter: cargo build --release (a few minutes the first time)" >&2
        (cd "$repo" && cargo build --release --quiet --bin haproxy-log-exporter) >&2 ||
            die "cargo build --release failed"
        echo "$repo/target/release/haproxy-log-exporter"
    else
        die "no exporter: build it (cargo build --release), put haproxy-log-exporter on PATH or set DEMO_EXPORTER"
    fi
}

haproxy_bin=${DEMO_HAPROXY:-$(command -v haproxy || true)}
prometheus_bin=${DEMO_PROMETHEUS:-$(command -v prometheus || true)}
[[ -n $haproxy_bin ]] || die "haproxy not found (apt-get install haproxy, or set DEMO_HAPROXY)"
[[ -n $prometheus_bin ]] || die "prometheus not found (apt-get install prometheus, or set DEMO_PROMETHEUS)"
command -v curl >/dev/null 2>&1 || die "curl not found (apt-get install curl)"
command -v setsid >/dev/null 2>&1 || die "setsid not found (util-linux)"

if [[ -e $state_file ]]; then
    read -r other_pid _ <"$state_file" || true
    if [[ -n ${other_pid:-} ]] && process_alive "$other_pid"; then
        die "a demo is already running (pid $other_pid): $script stop"
    fi
    # A demo that could not clean up (SIGKILL): what it left behind.
    stop_demo >/dev/null
fi
for var in DEMO_HAPROXY_PORT DEMO_EXPORTER_PORT DEMO_PROMETHEUS_PORT DEMO_SYSLOG_PORT DEMO_APP_PORT; do
    value=${!var:-1}
    if ! [[ $value =~ ^[0-9]{1,5}$ ]] || ((10#$value < 1 || 10#$value > 65535)); then
        die "$var=$value is not a port number"
    fi
done

host=$(connect_host "$listen")
port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
for spec in "$host:$haproxy_port:DEMO_HAPROXY_PORT" "$host:$exporter_port:DEMO_EXPORTER_PORT" \
    "$host:$prometheus_port:DEMO_PROMETHEUS_PORT" "127.0.0.1:$app_port:DEMO_APP_PORT"; do
    var=${spec##*:}
    rest=${spec%:*}
    port=${rest##*:}
    if port_busy "${rest%:*}" "$port"; then
        die "port $port is in use: set $var to a free port"
    fi
done

exporter_bin=$(find_exporter)

# --- start ------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/haproxy-log-exporter-demo.XXXXXX")
: >"$work/pgids"
pids=()
names=()

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$? i pid
    trap - INT TERM HUP EXIT
    # A child started just as the signal came may not be in pids yet.
    local p key value
    for p in /proc/[0-9]*; do
        while read -r key value; do
            if [[ $key == PPid: ]]; then
                if [[ $value == "$$" && " ${pids[*]} " != *" ${p#/proc/} "* ]]; then pids+=("${p#/proc/}"); fi
                break
            fi
        done 2>/dev/null <"$p/status" || true
    done
    if ((${#pids[@]} > 0)); then
        say ""
        say "stopping: ${names[*]}"
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
            kill -TERM -- "-${pids[i]}" 2>/dev/null || kill -TERM "${pids[i]}" 2>/dev/null || true
        done
        for _ in $(seq 100); do
            local left=0
            for pid in "${pids[@]}"; do
                if process_alive "$pid"; then left=1; fi
            done
            ((left)) || break
            sleep 0.1
        done
        for pid in "${pids[@]}"; do
            if group_alive "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
            if process_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        done
        for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    fi
    rm -rf "$work"
    rm -f "$state_file"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

printf '%s %s\n' "$$" "$work" >"$state_file"

# start NAME LOG PROGRAM ARGS...: in a session (and process group) of its own.
start() {
    local name=$1 log=$2
    shift 2
    setsid "$@" </dev/null >"$log" 2>&1 &
    pids+=("$!")
    names+=("$name")
    echo "$!" >>"$work/pgids"
}

# wait_for NAME LOG URL VARIABLE: until URL answers, while the last program started runs.
wait_for() {
    local name=$1 log=$2 url=$3 var=$4 pid=${pids[-1]}
    for _ in $(seq 300); do
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
        if ! process_alive "$pid"; then
            tail -n 20 "$log" >&2
            die "$name exited (is its port in use? set $var)"
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    die "$name did not answer $url within 30 s"
}

# The exporter: syslog over UDP only, metrics on the demo's address.
start exporter "$work/exporter.log" env \
    HLE_SYSLOG_UDP_ADDR="127.0.0.1:$syslog_port" HLE_SYSLOG_TCP_ADDR="" \
    HLE_WEB_LISTEN_ADDR="$listen:$exporter_port" \
    "$exporter_bin"
wait_for exporter "$work/exporter.log" "http://$host:$exporter_port/-/ready" "DEMO_EXPORTER_PORT or DEMO_SYSLOG_PORT"

# HAProxy: examples/haproxy.cfg with the demo's ports.
sed -e "s/^\(    log \)127\.0\.0\.1:5140 /\1127.0.0.1:$syslog_port /" \
    -e "s/^\(    bind \):8080$/\1$listen:$haproxy_port/" \
    -e "s/127\.0\.0\.1:8404$/127.0.0.1:$app_port/" \
    "$repo/examples/haproxy.cfg" >"$work/haproxy.cfg"
for want in "log 127.0.0.1:$syslog_port " "bind $listen:$haproxy_port" \
    "server app1 127.0.0.1:$app_port" "bind 127.0.0.1:$app_port"; do
    grep -qF "$want" "$work/haproxy.cfg" || die "examples/haproxy.cfg changed: cannot set '$want' in its copy"
done
start haproxy "$work/haproxy.log" "$haproxy_bin" -db -f "$work/haproxy.cfg"
wait_for haproxy "$work/haproxy.log" "http://$host:$haproxy_port/hello" "DEMO_HAPROXY_PORT or DEMO_APP_PORT"

# Prometheus: the exporter as a static target with the labels Kubernetes
# service discovery would give it (the alert rules select container).
cp "$repo/deploy/prometheus/haproxy-log-exporter.rules.yml" "$work/"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  scrape_timeout: 4s
  evaluation_interval: 5s
rule_files:
  - haproxy-log-exporter.rules.yml
scrape_configs:
  - job_name: haproxy-log-exporter
    static_configs:
      - targets: ["$host:$exporter_port"]
        labels:
          container: haproxy-log-exporter
          namespace: demo
          pod: demo
EOF
start prometheus "$work/prometheus.log" "$prometheus_bin" \
    --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="$listen:$prometheus_port" --log.level=warn
wait_for prometheus "$work/prometheus.log" "http://$host:$prometheus_port/-/ready" DEMO_PROMETHEUS_PORT

start traffic "$work/traffic.log" "$BASH" "$script" __traffic "http://$host:$haproxy_port"

# --- running ---------------------------------------------------------------------------
prom="http://$host:$prometheus_port"
graph() { printf '%s/graph?g0.expr=%s&g0.tab=0&g0.range_input=15m' "$prom" "$(urlencode "$1")"; }
queries=(
    'sum(rate(haproxy_log_requests_total[1m])) by (status_code)'
    'histogram_quantile(0.95, sum(rate(haproxy_log_response_processing_seconds_bucket[1m])) by (le, backend_name))'
    'sum(rate(haproxy_log_exporter_lines_received_total[1m]))'
)
say ""
say "The demo runs (exporter: $exporter_bin):"
say "  HAProxy      http://$host:$haproxy_port/   (traffic: about 8 requests/s, a quarter 404)"
say "  exporter     http://$host:$exporter_port/metrics"
say "  Prometheus   $prom/graph   (alerts: $prom/alerts)"
say "Queries to try (answers within a minute):"
for q in "${queries[@]}"; do
    say "  $q"
    say "    $(graph "$q")"
done
if [[ -n $run_for ]]; then
    say "Stopping in $run_for s ($script stop stops it sooner)."
else
    say "Ctrl-C (or $script stop) stops everything."
fi

mkfifo "$work/tick"
exec {tick}<>"$work/tick"
started=$SECONDS
while [[ -z $run_for ]] || ((SECONDS - started < run_for)); do
    for i in "${!pids[@]}"; do
        if ! process_alive "${pids[i]}"; then
            tail -n 20 "$work/${names[i]}.log" >&2
            die "${names[i]} stopped unexpectedly"
        fi
    done
    # A read that times out: unlike sleep, it lets a signal's trap run at
    # once, and leaves no child behind.
    read -r -t 1 -u "$tick" _ || true
done
exit 0
