#!/usr/bin/env bash
# What a /metrics scrape costs at 10,000 hosts (SQLite): the scrape that reads the host counts
# (two indexed COUNTs, at most every 15 s), a scrape served from the cached counts, and /healthz as
# the baseline of the same run; medians of 3 rounds, the load average printed.
#
#   scripts/bench-metrics.sh            # env: HOSTS (default 10000), AUTO_SERVER (binary; default
#                                       # target/debug/auto-server, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

HOSTS=${HOSTS:-10000}
BIN=${AUTO_SERVER:-target/debug/auto-server}
[ -x "$BIN" ] || cargo build -q -p auto-server

WORK=$(mktemp -d)
SERVER_PID=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

DB="sqlite://$WORK/bench.db"
"$BIN" --db "$DB" --log warn migrate
# half of them reported today, half 30 days ago (stale)
python3 - "$WORK/bench.db" "$HOSTS" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
now = int(time.time())
c = sqlite3.connect(db)
c.executemany(
    "INSERT INTO hosts (hostname, created_at, last_report_at) VALUES (?, ?, ?)",
    ((f"bench-{i}", now, now - (30 * 86400 if i % 2 else 60)) for i in range(n)),
)
c.commit()
PY

"$BIN" --db "$DB" --log warn serve --listen 127.0.0.1:0 > "$WORK/stdout" 2> "$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$WORK/stdout" 2>/dev/null && break
    sleep 0.1
done
BASE=$(sed -n 's/^auto-server listening on //p' "$WORK/stdout")
[ -n "$BASE" ] || { cat "$WORK/server.log" >&2; exit 2; }

ms() { curl -fsS -o /dev/null -w '%{time_total}' "$BASE$1" | awk '{printf "%.2f", $1 * 1000}'; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

health=() cold=() warm=()
for round in 1 2 3; do
    [ "$round" = 1 ] || sleep 16 # the host counts are read again after 15 s
    health+=("$(ms /healthz)")
    cold+=("$(ms /metrics)")
    warm+=("$(ms /metrics)")
done
hosts=$(curl -fsS "$BASE/metrics" | sed -n 's/^auto_server_hosts //p')
stale=$(curl -fsS "$BASE/metrics" | sed -n 's/^auto_server_hosts_stale //p')
echo "hosts $hosts, stale $stale; $BIN"
echo "GET /healthz (baseline)             median $(median "${health[@]}") ms  (${health[*]})"
echo "GET /metrics, host counts read      median $(median "${cold[@]}") ms  (${cold[*]})"
echo "GET /metrics, host counts cached    median $(median "${warm[@]}") ms  (${warm[*]})"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
