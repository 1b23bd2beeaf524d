#!/usr/bin/env bash
# Retention benchmark of auto-server: the database size after a simulated year of daily reports
# with 1 % of each host's parts changing every day, without pruning and after `auto-server prune`
# (change log 90 days, report rows 30 days, error log 90 days) once at the end, and with `serve`
# pruning by itself as the year goes (BENCH_PERIODIC=0 leaves that run out), scaled to 1,000 hosts.
#
#   scripts/bench-retention.sh   # env: BENCH_HOSTS (10), BENCH_DAYS (365), BENCH_PARTS (200),
#                                #      BENCH_CONCURRENCY (4), BENCH_PROFILE (debug | release),
#                                #      BENCH_PERIODIC (1)
#
# The server runs on the test clock (AUTO_SERVER_TEST_CLOCK_FILE; a release build needs
# --allow-test-clock), which the simulator (server/examples/retention_sim.rs) moves one day ahead
# before each day's reports. BENCH_HOSTS hosts are simulated and the sizes multiplied by
# 1000 / BENCH_HOSTS: every host's rows are its own, so the size is linear in the hosts (the
# scaled figure leaves out only the fixed cost of an empty database, measured and printed).
set -euo pipefail
cd "$(dirname "$0")/.."

HOSTS=${BENCH_HOSTS:-10}
DAYS=${BENCH_DAYS:-365}
PARTS=${BENCH_PARTS:-200}
CONCURRENCY=${BENCH_CONCURRENCY:-4}
PROFILE=${BENCH_PROFILE:-debug}
CHANGE_LOG_DAYS=90
REPORT_BODIES_DAYS=30
ERROR_LOG_DAYS=90

if [ "$PROFILE" = release ]; then
    cargo build -q --release -p auto-server --bin auto-server --example retention_sim
else
    cargo build -q -p auto-server --bin auto-server --example retention_sim
fi
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE
BIN=$TARGET/auto-server
SIM=$TARGET/examples/retention_sim

WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    SERVER_PID=
}
trap 'stop_server; rm -rf "$WORK"' EXIT

CLOCK=$WORK/clock
START=$(date +%s)
echo "$START" > "$CLOCK"
export AUTO_SERVER_TEST_CLOCK_FILE=$CLOCK
DB=$WORK/year.db
srv() { "$BIN" --allow-test-clock --db "sqlite://$1" --master-key "$WORK/master-key" --log warn "${@:2}"; }
# the size of a database with its WAL checkpointed into the file
size() { sqlite3 "$1" "PRAGMA wal_checkpoint(TRUNCATE)" > /dev/null; stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rows() { sqlite3 "$1" "SELECT COUNT(*) FROM $2"; }

srv "$WORK/empty.db" migrate 2>/dev/null
EMPTY=$(size "$WORK/empty.db")

# simulate DB [SERVE_FLAGS...]: the year on a fresh database, the server started with the flags
simulate() {
    local db=$1 secret base
    shift
    echo "$START" > "$CLOCK"
    secret=$(srv "$db" keys create bench 2>/dev/null)
    # the binary itself in the background (not through srv: $! would be a subshell's pid)
    "$BIN" --allow-test-clock --db "sqlite://$db" --master-key "$WORK/master-key" --log warn \
        serve --listen 127.0.0.1:0 --max-connections 8 "$@" > "$WORK/stdout" 2> "$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do   # up to 60 s: a loaded machine migrates a new database slowly
        grep -q "listening on" "$WORK/stdout" 2>/dev/null && break
        sleep 0.1
    done
    base=$(sed -n 's/^auto-server listening on //p' "$WORK/stdout")
    [ -n "$base" ] || { echo "bench: server did not start" >&2; cat "$WORK/server.log" >&2; exit 2; }
    local t0
    t0=$(date +%s)
    "$SIM" "$base" bench "$secret" "$CLOCK" "$START" "$HOSTS" "$DAYS" "$PARTS" "$CONCURRENCY"
    echo "simulation took $(( $(date +%s) - t0 )) s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    stop_server   # a clean close checkpoints the WAL into the file
}

echo "== a simulated year: $HOSTS hosts x $DAYS days, $PARTS parts per host, 1 % changing daily ($PROFILE build) =="
simulate "$DB"
PERIODIC=${BENCH_PERIODIC:-1}
if [ "$PERIODIC" = 1 ]; then
    echo "== the same year, serve pruning by itself every 2 s of real time (about every simulated day) =="
    simulate "$WORK/served.db" --change-log-days "$CHANGE_LOG_DAYS" --report-bodies-days "$REPORT_BODIES_DAYS" \
        --error-log-days "$ERROR_LOG_DAYS" --prune-interval-secs 2
    srv "$WORK/served.db" backup "$WORK/served-compact.db" 2>/dev/null
fi

# the clock is at the last simulated day: prune a copy of the unpruned year once, now
sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE)" > /dev/null
cp "$DB" "$WORK/pruned.db"
T0=$(date +%s%N)
srv "$WORK/pruned.db" prune --change-log-days "$CHANGE_LOG_DAYS" --report-bodies-days "$REPORT_BODIES_DAYS" \
    --error-log-days "$ERROR_LOG_DAYS"
PRUNE_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
srv "$DB" backup "$WORK/year-compact.db" 2>/dev/null
srv "$WORK/pruned.db" backup "$WORK/pruned-compact.db" 2>/dev/null

scale() { awk -v b="$1" -v e="$EMPTY" -v h="$HOSTS" 'BEGIN { printf "%.1f", (e + (b - e) * 1000 / h) / 1048576 }'; }
echo
echo "empty database: $(mb "$EMPTY") MiB; prune of the year took $PRUNE_MS ms (one run)"
printf '%-34s %10s %10s %10s %12s %12s %16s\n' "database after $DAYS days" "changes" "reports" "components" "file MiB" "compact MiB" "1000 hosts MiB"
for v in "no pruning:$DB:$WORK/year-compact.db" \
         "pruned once at the end:$WORK/pruned.db:$WORK/pruned-compact.db" \
         "pruned by serve as it went:$WORK/served.db:$WORK/served-compact.db"; do
    IFS=: read -r label file compact <<<"$v"
    [ -f "$file" ] || continue
    printf '%-34s %10s %10s %10s %12s %12s %16s\n' "$label" "$(rows "$file" changes)" "$(rows "$file" reports)" \
        "$(rows "$file" components)" "$(mb "$(size "$file")")" "$(mb "$(size "$compact")")" "$(scale "$(size "$compact")")"
done
echo "(file: the SQLite file as it is; compact: its VACUUM INTO copy, auto-server backup. A pruned file keeps"
echo " its freed pages for reuse, so a server that prunes as it goes stays near the compact size.)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
