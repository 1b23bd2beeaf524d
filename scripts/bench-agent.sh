#!/usr/bin/env bash
# Benchmark: one full agent run end to end (load the six collectors, collect, sign, POST, the
# server commits on SQLite), median over RUNS, with `auto-client collect` (no delivery) beside it.
# Usage: scripts/bench-agent.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
dpkg -s hyperfine >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --workspace --quiet
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
db="sqlite://$work/cmdb.sqlite"
( umask 077; target/release/auto-server keys create bench --db "$db" > "$work/key" 2>/dev/null )
target/release/auto-server serve --db "$db" --listen 127.0.0.1:0 > "$work/out" 2> "$work/log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
api=$(awk '/listening/{print $NF}' "$work/out")
client="target/release/auto-client --plugins plugins.toml"
run="$client run --mode agent --api $api --key-id bench --key-file $work/key --cert-file $work/cert --spool-dir $work/spool"
$run 2>/dev/null   # first run creates the host; the benchmark measures the daily update
hyperfine -N --warmup 3 --style basic --export-json target/bench-agent.json -r "$runs" \
  -n "auto-client run (collect+sign+POST+commit)" "$run" \
  -n "auto-client collect (no delivery)" "$client collect" 2>&1 | grep -vE '^\s*$'
python3 - <<'PY'
import json
r = json.load(open("target/bench-agent.json"))["results"]
print("\n| command | median | mean | min | max |\n|---|---|---|---|---|")
for x in r:
    print(f"| {x['command']} | {x['median']*1000:.1f} ms | {x['mean']*1000:.1f} ms | {x['min']*1000:.1f} ms | {x['max']*1000:.1f} ms |")
PY
