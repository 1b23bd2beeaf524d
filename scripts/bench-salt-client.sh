#!/usr/bin/env bash
# Benchmark: `auto-client collect --mode salt` (six collectors) on N minions, beside Salt's own
# `salt -L ... grains.items` on the same minions, in one run. Prints minions per second.
# Usage: scripts/bench-salt-client.sh [N ...]   (default: 5 20; root; uses scripts/salt.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(5 20)
cargo build --release --quiet -p auto-client -p collector-os -p collector-cpu -p collector-memory \
    -p collector-disk -p collector-nic -p collector-board
dir=$(mktemp -d /tmp/bench-salt-client.XXXXXX)
trap 'scripts/salt.sh down --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
salt=target/salt-venv/bin/salt
printf '| minions | auto-client collect --mode salt | salt grains.items |\n|---|---|---|\n'
for n in "${sizes[@]}"; do
    scripts/salt.sh up "$n" --dir "$dir" >/dev/null
    conf=$(cat "$dir/master-config-dir")
    list=$(paste -sd, "$dir/minions.txt")
    t0=$(date +%s.%N)
    target/release/auto-client --plugins plugins.toml collect --mode salt --hosts-file "$dir/minions.txt" \
        --salt-command "$salt" --salt-config-dir "$conf" --workers "$n" > "$dir/reports.json" 2> "$dir/client.log"
    t1=$(date +%s.%N)
    "$salt" -c "$conf" -L "$list" grains.items --out=json --static -t 60 > /dev/null 2>&1
    t2=$(date +%s.%N)
    ok=$(grep -c '"schema"' "$dir/reports.json" || true)
    awk -v n="$n" -v ok="$ok" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
        printf "| %d | %.2f s, %.1f minions/s (%d reports) | %.2f s, %.1f minions/s |\n", n, b-a, n/(b-a), ok, c-b, n/(c-b) }'
done
