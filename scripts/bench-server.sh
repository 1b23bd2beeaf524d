#!/usr/bin/env bash
# Ingest benchmark of auto-server: signed six-collector reports from 1,000 distinct hosts over
# HTTP on loopback (rounds: new hosts, the same with changes, unchanged), on SQLite, then on
# PostgreSQL (the private cluster of scripts/pg.sh; skipped when it cannot start).
#
#   scripts/bench-server.sh            # env: BENCH_HOSTS (1000), BENCH_CONCURRENCY (32), BENCH_SKIP_PG=1,
#                                      #      BENCH_BASE=/path/to/other/auto-server, BENCH_REPEATS (3)
#
# Release build under CARGO_TARGET_DIR (default target-server). Prints reports/s, p50/p99 and the
# server's CPU per report for each run (on PostgreSQL also the cluster's own CPU per report, each
# round), and the load average before and after it. With BENCH_BASE
# (a baseline binary, e.g. one built from an older commit), the baseline and this build run alternately BENCH_REPEATS times on each backend,
# each on a fresh database, and the medians of each round are printed side by side.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-server}
HOSTS=${BENCH_HOSTS:-1000}
CONCURRENCY=${BENCH_CONCURRENCY:-32}

cargo build -q --release -p auto-server --bin auto-server --example ingest_load
BIN=$CARGO_TARGET_DIR/release/auto-server
LOAD=$CARGO_TARGET_DIR/release/examples/ingest_load
BASE=${BENCH_BASE:-}
REPEATS=${BENCH_REPEATS:-3}

WORK=$(mktemp -d)
SERVER_PID=
PG_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    SERVER_PID=
}
trap 'stop_server; rm -rf "$WORK"' EXIT

# run_bench LABEL DB_URL [BINARY]
run_bench() {
    local label=$1 db=$2 bin=${3:-$BIN} mk="$WORK/$1.master-key"
    local secret
    secret=$("$bin" --db "$db" --master-key "$mk" --log warn keys create bench)
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
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ -n "$PG_PID" ]; then
        # Each round's PostgreSQL CPU per report, from the cluster's processes at the round's end
        # (the backends are the server's pooled connections: they live through all rounds).
        local line before after
        before=$(pg_cpu)
        "$LOAD" "$base" bench "$secret" "$HOSTS" "$CONCURRENCY" | while IFS= read -r line; do
            printf '%s\n' "$line"
            case $line in
            round*)
                after=$(pg_cpu)
                awk -v a="$before" -v b="$after" -v n="$HOSTS" \
                    'BEGIN { printf "  postgresql cpu: %.2f s = %.2f ms per report\n", b - a, 1000 * (b - a) / n }'
                before=$after
                ;;
            esac
        done
    else
        "$LOAD" "$base" bench "$secret" "$HOSTS" "$CONCURRENCY"
    fi
    # CPU the server itself used (all rounds, plus start-up): the figure that does not depend on
    # how busy the rest of the machine is.
    local ticks hz
    ticks=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
    hz=$(getconf CLK_TCK)
    awk -v t="$ticks" -v hz="$hz" -v n="$((HOSTS * 3))" \
        'BEGIN { printf "server cpu: %.2f s for %d reports = %.2f ms per report\n", t / hz, n, 1000 * t / hz / n }'
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    stop_server
}

# medians LOG: per binary and round, the median reports/s, p99 and server CPU of the runs in LOG
medians() {
    awk '
        /^== / { who = ($2 ~ /^base/) ? "baseline" : "this build" }
        /^round / {
            r = $2; ++n[who, r]
            for (i = 1; i <= NF; i++) {
                if ($i == "reports/s;") rs[who, r, n[who, r]] = $(i - 1)
                if ($i == "p99") p99[who, r, n[who, r]] = $(i + 1)
            }
        }
        /^server cpu:/ { cpu[who, ++c[who]] = $(NF - 3) }
        function med(arr, who, r, k,   i, j, t, v) {
            for (i = 1; i <= k; i++) v[i] = arr[who, r, i]
            for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
            return v[int((k + 1) / 2)]
        }
        END {
            split("baseline|this build", whos, "|")
            for (w = 1; w <= 2; w++) {
                who = whos[w]
                if (!c[who]) continue
                for (i = 1; i <= c[who]; i++) cv[who, 0, i] = cpu[who, i]
                printf "median of %d, %-10s:", c[who], who
                for (r = 1; r <= 3; r++) printf "  round %d %s/s p99 %s ms;", r, med(rs, who, r, n[who, r]), med(p99, who, r, n[who, r])
                printf "  server cpu %s ms/report\n", med(cv, who, 0, c[who])
            }
        }' "$1"
}

# bench_backend NAME URL_FOR_RUN_K: one run, or BASE and this build alternating REPEATS times
bench_backend() {
    local name=$1 make_url=$2 log="$WORK/$1.runs"
    : > "$log"
    if [ -z "$BASE" ]; then
        run_bench "$name" "$($make_url 1)" | tee -a "$log"
        return
    fi
    local k
    for k in $(seq 1 "$REPEATS"); do
        run_bench "base-$name" "$($make_url "b$k")" "$BASE" | tee -a "$log"
        run_bench "$name" "$($make_url "n$k")" | tee -a "$log"
    done
    echo "== $name: baseline $BASE vs this build, alternating =="
    medians "$log"
}

sqlite_url() { echo "sqlite://$WORK/bench-$1.db"; }
bench_backend sqlite sqlite_url

if [ "${BENCH_SKIP_PG:-0}" = 1 ]; then
    echo "== postgresql: skipped (BENCH_SKIP_PG=1) =="
    exit 0
fi
if ! PG=$(scripts/pg.sh 2> "$WORK/pg.log"); then
    echo "== postgresql: skipped (scripts/pg.sh failed: $(tail -n 1 "$WORK/pg.log")) =="
    exit 0
fi
# The private cluster's CPU so far (s): the postmaster's own and its reaped children's, and each
# live child's (the backends, the checkpointer, the WAL writer, autovacuum). Read when a round's
# line comes: the next round may have begun (a little of it counts in the round before).
PG_PID=$(head -n 1 "${AUTO_PG_DIR:-/tmp/auto-client-pg}/data/postmaster.pid" 2>/dev/null || true)
# only a live postmaster of that cluster is measured (else the figure is left out)
if [ -z "$PG_PID" ] || [ "$(cat "/proc/$PG_PID/comm" 2>/dev/null)" != postgres ]; then PG_PID=; fi
pg_cpu() {
    local hz kids='' c
    hz=$(getconf CLK_TCK)
    [ -r "/proc/$PG_PID/stat" ] || { printf '0.00'; return 0; }
    {
        cat "/proc/$PG_PID/stat" 2>/dev/null || true
        # the children file needs CONFIG_PROC_CHILDREN; pgrep -P where it is missing
        read -r kids 2>/dev/null < "/proc/$PG_PID/task/$PG_PID/children" || kids=$(pgrep -P "$PG_PID" || true)
        for c in $kids; do cat "/proc/$c/stat" 2>/dev/null || true; done
    } | awk -v hz="$hz" '{ sub(/^.*\) /, ""); t += $12 + $13; if (NR == 1) t += $14 + $15 } END { printf "%.2f", t / hz }'
}
pg_url() {
    local name="bench_$$_$1"
    psql -q "$PG" -c "CREATE DATABASE $name" > /dev/null
    echo "${PG%/postgres}/$name"
}
bench_backend postgresql pg_url
for name in $(psql -Atq "$PG" -c "SELECT datname FROM pg_database WHERE datname LIKE 'bench_$$_%'"); do
    psql -q "$PG" -c "DROP DATABASE $name WITH (FORCE)" > /dev/null
done
