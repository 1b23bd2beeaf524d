#!/usr/bin/env bash
# Ingest benchmark of auto-server: signed six-collector reports from 1,000 distinct hosts over
# HTTP on loopback (rounds: new hosts, the same with changes, unchanged), on SQLite, then on
# PostgreSQL (the private cluster of scripts/pg.sh; skipped when it cannot start).
#
#   scripts/bench-server.sh            # env: BENCH_HOSTS (1000), BENCH_CONCURRENCY (32), BENCH_SKIP_PG=1
#
# Comparisons in one run: BENCH_BASELINE_BIN=PATH (another auto-server binary, e.g. main's) runs
# the same rounds with it; BENCH_WEBHOOK=1 adds a run of this build with one webhook subscription
# that selects every change (its receiver, a closed port, is down: the events queue up);
# BENCH_RUNS=N (default 1) repeats the set, interleaved, and prints the median of each figure.
#
# Release build under CARGO_TARGET_DIR (default target-server). Prints reports/s and p50/p99.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-server}
HOSTS=${BENCH_HOSTS:-1000}
CONCURRENCY=${BENCH_CONCURRENCY:-32}
RUNS=${BENCH_RUNS:-1}
BASELINE=${BENCH_BASELINE_BIN:-}
if [ -n "$BASELINE" ] && [ ! -x "$BASELINE" ]; then
    echo "bench: BENCH_BASELINE_BIN $BASELINE is not an executable" >&2
    exit 2
fi

cargo build -q --release -p auto-server --bin auto-server --example ingest_load
BIN=$CARGO_TARGET_DIR/release/auto-server
LOAD=$CARGO_TARGET_DIR/release/examples/ingest_load

WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    SERVER_PID=
}
trap 'stop_server; rm -rf "$WORK"' EXIT

RESULTS=$WORK/results
: > "$RESULTS"

# run_bench LABEL DB_URL [BINARY [VARIANT]]: VARIANT webhook subscribes every change first
run_bench() {
    local label=$1 db=$2 bin=${3:-$BIN} variant=${4:-} mk="$WORK/$1.master-key"
    local secret
    rm -f "$mk"
    secret=$("$bin" --db "$db" --master-key "$mk" --log warn keys create bench)
    if [ "$variant" = webhook ]; then
        printf 'bench-webhook-secret-0123456789\n' > "$WORK/hook.secret"
        "$bin" --db "$db" --master-key "$mk" --log warn webhooks add http://127.0.0.1:9/hook \
            --secret-file "$WORK/hook.secret" > /dev/null
    fi
    : > "$WORK/stdout"
    "$bin" --db "$db" --master-key "$mk" --log warn serve --listen 127.0.0.1:0 --max-connections 16 \
        > "$WORK/stdout" 2> "$WORK/$label.log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        grep -q "listening on" "$WORK/stdout" 2>/dev/null && break
        sleep 0.1
    done
    local base
    base=$(sed -n 's/^auto-server listening on //p' "$WORK/stdout")
    [ -n "$base" ] || { echo "bench: server did not start" >&2; cat "$WORK/$label.log" >&2; exit 2; }
    echo "== $label =="
    "$LOAD" "$base" bench "$secret" "$HOSTS" "$CONCURRENCY" | tee "$WORK/load.out"
    local group=${label%-r*}
    sed -n 's/^round \([0-9]\).* = \([0-9]*\) reports\/s; p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \2 \3 \4/p' \
        "$WORK/load.out" | while read -r round rate p50 p99; do
        {
            echo "$group round$round reports/s $rate"
            echo "$group round$round p50_ms $p50"
            echo "$group round$round p99_ms $p99"
        } >> "$RESULTS"
    done    # CPU the server itself used (all rounds, plus start-up): the figure that does not depend on
    # how busy the rest of the machine is.
    local ticks hz
    ticks=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
    hz=$(getconf CLK_TCK)
    awk -v t="$ticks" -v hz="$hz" -v n="$((HOSTS * 3))" \
        'BEGIN { printf "server cpu: %.2f s for %d reports = %.2f ms per report\n", t / hz, n, 1000 * t / hz / n }'
    awk -v t="$ticks" -v hz="$hz" -v n="$((HOSTS * 3))" -v l="$group" \
        'BEGIN { printf "%s all cpu_ms_per_report %.3f\n", l, 1000 * t / hz / n }' >> "$RESULTS"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    stop_server
}

# the medians over the runs, per label and figure
summary() {
    [ "$RUNS" -gt 1 ] || [ -n "$BASELINE" ] || [ "${BENCH_WEBHOOK:-0}" = 1 ] || return 0
    echo "== medians of $RUNS run(s) (load average now: $(cut -d' ' -f1-3 /proc/loadavg)) =="
    sort -k1,1 -k2,2 -k3,3 -k4,4g "$RESULTS" | awk '
        function flush() { if (n) printf "%-28s %-7s %-20s %s  (runs: %s)\n", k1, k2, k3, v[int((n + 1) / 2)], all }
        { key = $1 " " $2 " " $3
          if (key != prev) { flush(); n = 0; all = ""; prev = key; k1 = $1; k2 = $2; k3 = $3 }
          v[++n] = $4; all = all (all == "" ? "" : " ") $4 }
        END { flush() }'
}

# a fresh database per run: DB_URL for a label (sqlite file, or a new PostgreSQL database)
db_url() {
    local backend=$1 label=$2
    if [ "$backend" = sqlite ]; then
        echo "sqlite://$WORK/$label.db"
    else
        local name=bench_$$_${label//-/_}
        psql -q "$PG" -c "CREATE DATABASE $name" > /dev/null
        echo "${PG%/postgres}/$name"
    fi
}
drop_db() {
    local backend=$1 label=$2
    if [ "$backend" = postgresql ]; then
        psql -q "$PG" -c "DROP DATABASE bench_$$_${label//-/_} WITH (FORCE)" > /dev/null
    fi
}

# one set: the baseline binary (if any), this build, this build with a webhook (if asked)
run_set() {
    local backend=$1 run=$2 label
    if [ -n "$BASELINE" ]; then
        label=$backend-baseline-r$run
        run_bench "$label" "$(db_url "$backend" "$label")" "$BASELINE"
        drop_db "$backend" "$label"
    fi
    label=$backend-this-r$run
    run_bench "$label" "$(db_url "$backend" "$label")" "$BIN"
    drop_db "$backend" "$label"
    if [ "${BENCH_WEBHOOK:-0}" = 1 ]; then
        label=$backend-webhook-r$run
        run_bench "$label" "$(db_url "$backend" "$label")" "$BIN" webhook
        drop_db "$backend" "$label"
    fi
}

for run in $(seq 1 "$RUNS"); do
    run_set sqlite "$run"
done

if [ "${BENCH_SKIP_PG:-0}" = 1 ]; then
    echo "== postgresql: skipped (BENCH_SKIP_PG=1) =="
    summary
    exit 0
fi
if ! PG=$(scripts/pg.sh 2> "$WORK/pg.log"); then
    echo "== postgresql: skipped (scripts/pg.sh failed: $(tail -n 1 "$WORK/pg.log")) =="
    summary
    exit 0
fi
for run in $(seq 1 "$RUNS"); do
    run_set postgresql "$run"
done
summary
