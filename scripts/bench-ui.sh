#!/usr/bin/env bash
# The web pages' speed with a full inventory: fills a fresh SQLite database with HOSTS hosts
# (server/examples/ingest_load.rs: three rounds, so the change log has rows), logs in, then times
# the inventory page, a search by MAC, a host page and the dashboard: REQS requests each, p50/p99
# per run, three runs, the median of the three. Prints the load average, the query plans of the
# search and of the dashboard, and (the same run's baseline for the dashboard) the time sqlite3
# takes for the dashboard's SQL before migration 8 against its SQL now (median of 3 each).
#
#   scripts/bench-ui.sh [HOSTS=10000] [REQS=200]
#
# Release build (target/release); state in a temp dir, removed at the end. Goal: p99 <= 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-10000}
reqs=${2:-200}

cargo build --release -q -p auto-server --bin auto-server --example ingest_load
bin=target/release/auto-server
load=target/release/examples/ingest_load

work=$(mktemp -d)
pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
db="sqlite://$work/bench.db"

"$bin" --db "$db" --log warn serve --listen 127.0.0.1:0 --no-auth > "$work/out" 2> "$work/log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^auto-server listening on //p' "$work/out")
[ -n "$base" ] || { echo "bench-ui: the server did not start" >&2; cat "$work/log" >&2; exit 2; }

echo "==> filling $hosts hosts ($base)"
"$load" "$base" bench 0000000000000000000000000000000000000000000000000000000000000000 "$hosts" 16 | sed 's/^/    /'

echo "bench-password-1" | "$bin" --db "$db" --log warn users add bench --role viewer
jar="$work/jar"
csrf=$(curl -fsS -c "$jar" "$base/ui/login" | grep -o 'name="csrf" value="[0-9a-f]*"' | grep -o '[0-9a-f]\{64\}')
curl -fsS -b "$jar" -c "$jar" -o /dev/null -d "csrf=$csrf&user=bench&password=bench-password-1&next=/ui/" "$base/ui/login"

mid=$((hosts / 2))
mac=$(printf '3c:ec:ef:%02x:%02x:00' $((mid / 256)) $((mid % 256)))
host=$(printf 'node-%05d' "$mid")

# p50 and p99 in ms of REQS GETs of one URL (curl's total time; a warm-up request first)
run() {
  local url=$1
  curl -fsS -b "$jar" -o /dev/null "$url"
  for _ in $(seq "$reqs"); do curl -fsS -b "$jar" -o /dev/null -w '%{time_total}\n' "$url"; done |
    sort -n | awk '{a[NR]=$1} END {p50=a[int(NR*0.5)]; i=int(NR*0.99); if (i<1) i=1; printf "%.1f %.1f\n", p50*1000, a[i]*1000}'
}

median() { sort -n | sed -n 2p; }

echo "==> load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
printf '%-34s %10s %10s   %s\n' "page" "p50 ms" "p99 ms" "(median of 3 runs of $reqs requests)"
for spec in "inventory page|/ui/hosts" "search by MAC|/ui/hosts?q=$mac" "host page|/ui/hosts/$host" \
            "API search by MAC|/api/v1/hosts?q=$mac" "dashboard|/ui/"; do
  name=${spec%%|*}; path=${spec#*|}
  r1=$(run "$base$path"); r2=$(run "$base$path"); r3=$(run "$base$path")
  p50=$(printf '%s\n%s\n%s\n' "${r1% *}" "${r2% *}" "${r3% *}" | median)
  p99=$(printf '%s\n%s\n%s\n' "${r1#* }" "${r2#* }" "${r3#* }" | median)
  printf '%-34s %10s %10s\n' "$name" "$p50" "$p99"
done
echo "==> load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
curl -fsS -b "$jar" "$base/ui/hosts?q=$mac" | grep -q "$host" || { echo "bench-ui: the search did not find $host" >&2; exit 1; }

echo "==> query plans (SQLite)"
sqlite3 "$work/bench.db" <<SQL
.print '-- search word (prefix range on the search index):'
EXPLAIN QUERY PLAN SELECT host_id FROM search_tokens WHERE token >= '$mac' AND token < '$mac'||char(1114111);
.print '-- inventory page (first 51 by name):'
EXPLAIN QUERY PLAN SELECT h.id FROM hosts h LEFT JOIN host_fields f ON f.host_id = h.id ORDER BY lower(h.hostname), h.id LIMIT 51;
.print '-- a summary column of one host:'
EXPLAIN QUERY PLAN SELECT data FROM components WHERE host_id = 1 AND kind = 'os' AND item = 'os_name';
.print '-- host page change timeline:'
EXPLAIN QUERY PLAN SELECT id FROM changes WHERE host_id = 1 AND id < 9223372036854775807 ORDER BY id DESC LIMIT 300;
.print '-- dashboard chart (the values of one fact over all hosts: the covering index of facts):'
EXPLAIN QUERY PLAN SELECT data, COUNT(*) AS n FROM components WHERE kind = 'os' AND item = 'os_name' AND volatile = 0 AND kind NOT LIKE '%.%' GROUP BY data ORDER BY n DESC, data LIMIT 10;
.print '-- dashboard failing collectors:'
EXPLAIN QUERY PLAN SELECT plugin, COUNT(*) AS n FROM host_failures GROUP BY plugin ORDER BY n DESC, plugin;
.print '-- dashboard counts (reported today; stale and never alike):'
EXPLAIN QUERY PLAN SELECT COUNT(*) AS n FROM hosts WHERE last_report_at >= 0;
.print '-- dashboard shared serials:'
EXPLAIN QUERY PLAN SELECT serial AS v FROM hosts WHERE serial IS NOT NULL GROUP BY serial HAVING COUNT(*) > 1 ORDER BY serial;
SQL

# The dashboard's SQL before migration 8 (a pass over the hosts for the counts, a join of every
# host's last report to the errors, each chart's facts read row by row) and now, timed by sqlite3.
old_sql="SELECT COUNT(*), SUM(CASE WHEN last_report_at >= 0 THEN 1 ELSE 0 END), SUM(CASE WHEN last_report_at < 0 THEN 1 ELSE 0 END), SUM(CASE WHEN last_report_at IS NULL THEN 1 ELSE 0 END) FROM hosts;
SELECT e.plugin, COUNT(*) AS n FROM hosts h JOIN errors e ON e.report_id = h.last_report_id WHERE e.code = 'plugin_failed' GROUP BY e.plugin ORDER BY n DESC;"
new_sql="SELECT COUNT(*) FROM hosts; SELECT COUNT(*) FROM hosts WHERE last_report_at >= 0; SELECT COUNT(*) FROM hosts WHERE last_report_at < 0; SELECT COUNT(*) FROM hosts WHERE last_report_at IS NULL;
SELECT plugin, COUNT(*) AS n FROM host_failures GROUP BY plugin ORDER BY n DESC, plugin;"
for f in os.os_name board.manufacturer board.product memory.total_bytes; do
  old_sql="$old_sql
SELECT data, COUNT(*) AS n FROM components WHERE kind = '${f%%.*}' AND item = '${f#*.}' GROUP BY data ORDER BY n DESC, data LIMIT 10;"
  new_sql="$new_sql
SELECT data, COUNT(*) AS n FROM components WHERE kind = '${f%%.*}' AND item = '${f#*.}' AND volatile = 0 AND kind NOT LIKE '%.%' GROUP BY data ORDER BY n DESC, data LIMIT 10;"
done
# milliseconds of real time for a batch of statements (sqlite3's .timer, summed)
sqltime() {
  printf '.timer on\n%s\n' "$1" | sqlite3 "$work/bench.db" |
    awk '/^Run Time/ {t += $4} END {printf "%.1f\n", t * 1000}'
}
echo "==> the dashboard's SQL in sqlite3 (ms, median of 3; load average $(cut -d' ' -f1-3 /proc/loadavg))"
o=$( (sqltime "$old_sql"; sqltime "$old_sql"; sqltime "$old_sql") | median)
n=$( (sqltime "$new_sql"; sqltime "$new_sql"; sqltime "$new_sql") | median)
printf '%-34s %10s\n' "before migration 8" "$o" "now" "$n"
