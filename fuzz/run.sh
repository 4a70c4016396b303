#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after the other, from a
# seed corpus made from the test fixtures, and prints the executions of each. Exits
# non-zero when a target finds a crash, a leak, an out-of-memory or a timeout (libFuzzer
# writes the input to fuzz/artifacts/<target>/).
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]     (default: 900 seconds, every target)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Leak detection
# is on for every target. FUZZ_ARGS adds libFuzzer options, e.g. FUZZ_ARGS=-max_len=512
# (shorter inputs run faster; log_format's inputs are a format and the lines it reads).
#
# Seeds (in a temporary directory; the corpus grows there and is removed at the end, or
# kept in FUZZ_CORPUS if set):
#   line        each line of tests/fixtures/haproxy/*.log behind a byte that picks the TCP
#               framing (auto, octet-count, lf), and the captured ring streams (*.tcp)
#   log_format  each log-format of tests/fixtures/haproxy/*.cfg, then lines of its .log
#   spop        the SPOP frames HAProxy sent (tests/fixtures/spoe/*.bin) behind a byte
#               that picks the read size
#   config_text deploy/web-config.yml and allowed-sources lists, behind a byte that picks
#               which parser reads them

set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-900}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(line log_format spop config_text)
fi
work=${FUZZ_CORPUS:-$(mktemp -d)}
[ -n "${FUZZ_CORPUS:-}" ] || trap 'rm -rf "$work"' EXIT

seed_line() {
    local dir=$1 n=0 f line
    for f in tests/fixtures/haproxy/*.log; do
        while IFS= read -r line && [ $n -lt 2000 ]; do
            n=$((n + 1))
            printf '%b%s\n' "\\x0$((n % 3))" "$line" >"$dir/$n"
        done <"$f"
    done
    for f in tests/fixtures/haproxy/*.tcp; do
        n=$((n + 1))
        { printf '\x00'; cat "$f"; } >"$dir/$n"
    done
}

seed_log_format() {
    local dir=$1 n=0 cfg format
    for cfg in tests/fixtures/haproxy/*.cfg; do
        format=$(grep -m1 -E '^\s*log-format ' "$cfg" || true)
        [ -n "$format" ] || continue
        n=$((n + 1))
        { printf '%s\n' "${format#"${format%%[![:space:]]*}"}"; head -n 5 "${cfg%.cfg}.log" 2>/dev/null || true; } >"$dir/$n"
    done
}

seed_spop() {
    local dir=$1 n=0 f
    for f in tests/fixtures/spoe/*.bin; do
        for pick in 0 6 63; do
            n=$((n + 1))
            { printf '%b' "\\x$(printf %02x $pick)"; cat "$f"; } >"$dir/$n"
        done
    done
}

seed_config_text() {
    local dir=$1
    { printf '\x00'; cat deploy/web-config.yml; } >"$dir/web-config"
    printf '\x00tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\nbasic_auth_users:\n  u: $2y$10$abcdefghijklmnopqrstuuH7VxQ0g5l1l9xkbk9Ogx3C0zXvQ0mVe\n' >"$dir/web-small"
    printf '\x0110.0.0.0/8, 192.168.1.7, fd00::/8, ::1' >"$dir/sources"
}

status=0
summary=()
for target in "${targets[@]}"; do
    corpus=$work/$target
    if [ ! -d "$corpus" ]; then
        mkdir -p "$corpus"
        "seed_$target" "$corpus"
    fi
    log=$work/$target.log
    echo "== $target: $seconds s from $(ls "$corpus" | wc -l) seeds" >&2
    if (cd fuzz && cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 -detect_leaks=1 ${FUZZ_ARGS:-}) >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
        tail -n 30 "$log" >&2
    fi
    runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    summary+=("$(printf '%-11s %-7s %s' "$target" "$result" "${runs:-no final count}")")
done
printf '%s\n' "${summary[@]}"
exit $status
