#!/usr/bin/env bash
# Ingest benchmark of auto-server: signed six-collector reports from 1,000 distinct hosts over
# HTTP on loopback (rounds: new hosts, the same with changes, unchanged), on SQLite, then on
# PostgreSQL (the private cluster of scripts/pg.sh; skipped when it cannot start).
#
#   scripts/bench-server.sh            # env: BENCH_HOSTS (1000), BENCH_CONCURRENCY (32), BENCH_SKIP_PG=1
#
# Release build under CARGO_TARGET_DIR (default target-server). Prints reports/s and p50/p99.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-server}
HOSTS=${BENCH_HOSTS:-1000}
CONCURRENCY=${BENCH_CONCURRENCY:-32}

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

# run_bench LABEL DB_URL
run_bench() {
    local label=$1 db=$2 mk="$WORK/$1.master-key"
    local secret
    secret=$("$BIN" --db "$db" --master-key "$mk" --log warn keys create bench)
    : > "$WORK/stdout"
    "$BIN" --db "$db" --master-key "$mk" --log warn serve --listen 127.0.0.1:0 --max-connections 16 \
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
    "$LOAD" "$base" bench "$secret" "$HOSTS" "$CONCURRENCY"
    # CPU the server itself used (all rounds, plus start-up): the figure that does not depend on
    # how busy the rest of the machine is.
    local ticks hz
    ticks=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
    hz=$(getconf CLK_TCK)
    awk -v t="$ticks" -v hz="$hz" -v n="$((HOSTS * 3))" \
        'BEGIN { printf "server cpu: %.2f s for %d reports = %.2f ms per report\n", t / hz, n, 1000 * t / hz / n }'
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    stop_server
}

run_bench sqlite "sqlite://$WORK/bench.db"

if [ "${BENCH_SKIP_PG:-0}" = 1 ]; then
    echo "== postgresql: skipped (BENCH_SKIP_PG=1) =="
    exit 0
fi
if ! PG=$(scripts/pg.sh 2> "$WORK/pg.log"); then
    echo "== postgresql: skipped (scripts/pg.sh failed: $(tail -n 1 "$WORK/pg.log")) =="
    exit 0
fi
DBNAME=bench_$$
psql -q "$PG" -c "CREATE DATABASE $DBNAME" > /dev/null
run_bench postgresql "${PG%/postgres}/$DBNAME"
psql -q "$PG" -c "DROP DATABASE $DBNAME WITH (FORCE)" > /dev/null
