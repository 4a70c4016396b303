#!/usr/bin/env bash
# Throughput of `haproxy-log-exporter replay` against mtail on the same generated corpus.
#
# Generates a deterministic HAProxy 2.6 corpus (RFC 3164 header, httplog with some
# tcplog lines) with examples/loadgen.rs, then runs mtail (in one-shot mode, with
# bench/haproxy.mtail: the exporter's default metrics), our replay and the floor
# (examples/linesplit.rs: reading the file and splitting its lines, nothing else) in turn,
# several times, and prints each one's median lines/s and CPU seconds per 1M lines, with
# the ratios to the floor and between ours and mtail.
# The two tools' counts must agree (requests by status, backend and server; the abort
# counters; the histogram counts), or the script fails.
#
# Usage: bench/compare-mtail.sh [--runs N] [--lines N] [--seed N] [--keep]
#   --runs N    runs of each tool (default 5)
#   --lines N   corpus size (default 1000000)
#   --seed N    corpus seed (default 1)
#   --keep      keep the work directory (corpus, outputs) and print where it is
#
# Needs bash, coreutils, awk, cargo, and mtail: installed with apt-get (Debian's
# `mtail` package) when missing, which needs root.

set -euo pipefail

runs=5
lines=1000000
seed=1
keep=false
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --lines) lines="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --keep) keep=true; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "compare-mtail: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."

if ! command -v mtail >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "compare-mtail: mtail is not installed, and installing it needs root: apt-get install mtail" >&2
        exit 1
    fi
    echo "compare-mtail: installing mtail" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtail >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtail >/dev/null
    fi
fi

echo "compare-mtail: building (release)" >&2
cargo build --release --quiet --bin haproxy-log-exporter --example loadgen --example linesplit
exporter=target/release/haproxy-log-exporter
loadgen=target/release/examples/loadgen
linesplit=target/release/examples/linesplit

work=$(mktemp -d)
if $keep; then
    echo "compare-mtail: work directory $work" >&2
else
    trap 'rm -rf "$work"' EXIT
fi

corpus="$work/corpus.log"
"$loadgen" corpus --lines "$lines" --seed "$seed" >"$corpus"
mkdir "$work/progs"
cp bench/haproxy.mtail "$work/progs/"
# Both tools then read the corpus from the page cache.
cat "$corpus" >/dev/null

TIMEFORMAT='%3R %3U %3S'

# One timed run: appends "wall user sys" to $work/$1.times.
run_ours() {
    { time env -i PATH="$PATH" "$exporter" replay "$corpus" >"$work/ours.prom" 2>"$work/ours.err"; } 2>>"$work/ours.times"
}
run_floor() {
    { time "$linesplit" "$corpus" >"$work/floor.out" 2>"$work/floor.err"; } 2>>"$work/floor.times"
}
run_mtail() {
    { time mtail --one_shot --one_shot_format=prometheus --logtostderr \
        --progs "$work/progs" --logs "$corpus" >"$work/mtail.prom" 2>"$work/mtail.err"; } 2>>"$work/mtail.times"
}

echo "compare-mtail: $runs runs of each on $lines lines ($(du -h "$corpus" | cut -f1)), alternating" >&2
for i in $(seq "$runs"); do
    run_mtail || { echo "compare-mtail: mtail failed:" >&2; tail -5 "$work/mtail.err" >&2; exit 1; }
    run_ours || { echo "compare-mtail: replay failed:" >&2; tail -5 "$work/ours.err" >&2; exit 1; }
    run_floor || { echo "compare-mtail: linesplit failed:" >&2; tail -5 "$work/floor.err" >&2; exit 1; }
    printf '  run %d: mtail %s s, ours %s s, floor %s s (wall)\n' "$i" \
        "$(tail -1 "$work/mtail.times" | cut -d' ' -f1)" "$(tail -1 "$work/ours.times" | cut -d' ' -f1)" \
        "$(tail -1 "$work/floor.times" | cut -d' ' -f1)" >&2
done

# --- Counts must agree -------------------------------------------------------------
# One line per non-zero series of the compared metrics: name|sorted labels (without
# mtail's `prog`)|value; a histogram's count summed over its labels.
normalise() {
    awk '
        /^#/ || !/^haproxy_log_/ || /^haproxy_log_exporter_/ { next }
        /_bucket\{/ || /_sum[{ ]/ { next }
        {
            value = $NF + 0
            if (value == 0) next
            series = $0; sub(/ [^ ]*$/, "", series)
            name = series; sub(/\{.*/, "", name)
            labels = ""
            if (index(series, "{")) {
                body = series; sub(/^[^{]*\{/, "", body)
                m = 0
                # Label values here never contain a quote (HAProxy names, paths, codes).
                while (match(body, /[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"/)) {
                    p = substr(body, RSTART, RLENGTH)
                    body = substr(body, RSTART + RLENGTH)
                    if (p !~ /^prog=/) kept[++m] = p
                }
                # insertion sort of the label pairs
                for (i = 2; i <= m; i++) { x = kept[i]; j = i - 1
                    while (j > 0 && kept[j] > x) { kept[j + 1] = kept[j]; j-- }
                    kept[j + 1] = x }
                for (i = 1; i <= m; i++) labels = labels (i > 1 ? "," : "") kept[i]
            }
            # mtail histograms have no labels (it cannot normalise paths or cap series):
            # their counts are compared summed over the labels.
            if (name ~ /_count$/) labels = ""
            sum[name "|" labels] += value
        }
        END { for (k in sum) printf "%s|%.0f\n", k, sum[k] }' "$1" | sort
}
normalise "$work/ours.prom" >"$work/ours.counts"
normalise "$work/mtail.prom" >"$work/mtail.counts"

total() { awk -F'|' -v m="$2" '$1 == m { s += $3 } END { printf "%.0f\n", s }' "$1"; }
ours_total=$(total "$work/ours.counts" haproxy_log_requests_total)
mtail_total=$(total "$work/mtail.counts" haproxy_log_requests_total)
counted=$(sed -n 's/.*: \([0-9]*\) counted.*/\1/p' "$work/ours.err")
split=$(cut -d' ' -f1 "$work/floor.out")

status=0
if [ "$ours_total" != "$mtail_total" ] || [ "$ours_total" != "$lines" ] || [ "$counted" != "$lines" ] \
    || [ "$split" != "$lines" ]; then
    echo "compare-mtail: COUNTS DIFFER: $lines lines; ours counted $counted, requests_total $ours_total; mtail requests_total $mtail_total; linesplit $split" >&2
    status=1
fi
if ! diff -q "$work/ours.counts" "$work/mtail.counts" >/dev/null; then
    echo "compare-mtail: SERIES DIFFER (< ours, > mtail), first differences:" >&2
    # diff exits 1 on differences and head may close the pipe early: neither is an error here.
    diff "$work/ours.counts" "$work/mtail.counts" | head -20 >&2 || true
    status=1
fi

# --- Report ------------------------------------------------------------------------
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
report() {
    local tool=$1 times="$work/$1.times"
    local wall rate cpu_m cores
    wall=$(cut -d' ' -f1 "$times" | median)
    rate=$(awk -v n="$lines" '{ print n / $1 }' "$times" | median)
    cpu_m=$(awk -v n="$lines" '{ print ($2 + $3) * 1000000 / n }' "$times" | median)
    cores=$(awk '{ print ($1 > 0 ? ($2 + $3) / $1 : 0) }' "$times" | median)
    printf '%-6s %12.0f lines/s   wall %7.3f s   cpu %7.3f s per 1M lines   %.2f cores\n' \
        "$tool" "$rate" "$wall" "$cpu_m" "$cores"
}
# The ratio of each set of consecutive runs, then the median: robust to the machine's
# speed drifting during the runs. $1, $2: the tools; field 1 is wall, 2 + 3 CPU.
wall_ratio() { paste -d' ' "$work/$1.times" "$work/$2.times" | awk '{ print ($1 > 0 ? $4 / $1 : 0) }' | median; }
cpu_ratio() { paste -d' ' "$work/$1.times" "$work/$2.times" | awk '{ c = $2 + $3; print (c > 0 ? ($5 + $6) / c : 0) }' | median; }
echo
echo "corpus: $lines lines, seed $seed; series compared: $(wc -l <"$work/ours.counts") ($( [ $status -eq 0 ] && echo "all equal" || echo "DIFFERENT")); medians of $runs runs"
report floor
report ours
report mtail
printf 'ratio  floor/ours lines/s:  %5.2fx   ours/floor CPU:  %5.2fx\n' "$(wall_ratio floor ours)" "$(cpu_ratio floor ours)"
printf 'ratio  floor/mtail lines/s: %5.2fx   mtail/floor CPU: %5.2fx\n' "$(wall_ratio floor mtail)" "$(cpu_ratio floor mtail)"
printf 'ratio  ours/mtail lines/s:  %5.2fx   mtail/ours CPU:  %5.2fx\n' "$(wall_ratio ours mtail)" "$(cpu_ratio ours mtail)"
exit $status
