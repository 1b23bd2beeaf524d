#!/usr/bin/env bash
# Benchmark: `auto-client collect --mode salt` (six collectors) on N minions, beside Salt's own
# `salt -L ... grains.items` on the same minions, in one run. Prints minions per second.
# Usage: RUNS=3 scripts/bench-salt-client.sh [N ...]   (default: 5 20; root; uses scripts/salt.sh)
# Per size: one untimed test.ping, then RUNS alternating runs of each; medians.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(5 20)
RUNS=${RUNS:-3}
cargo build --release --quiet -p auto-client -p collector-os -p collector-cpu -p collector-memory \
    -p collector-disk -p collector-nic -p collector-board
dir=$(mktemp -d /tmp/bench-salt-client.XXXXXX)
trap 'scripts/salt.sh down --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
salt=target/salt-venv/bin/salt
printf '| minions | auto-client collect --mode salt (median) | salt grains.items (median) | all runs, s (ours / grains) |\n|---|---|---|---|\n'
for n in "${sizes[@]}"; do
    scripts/salt.sh up "$n" --dir "$dir" >/dev/null
    conf=$(cat "$dir/master-config-dir")
    list=$(paste -sd, "$dir/minions.txt")
    # warm-up, untimed: the first job after the minions come up can stall in Salt itself
    "$salt" -c "$conf" -L "$list" test.ping --out=json --static -t 60 > /dev/null 2>&1 || true
    ac=(); gr=()
    for r in $(seq 1 "$RUNS"); do
        t0=$(date +%s.%N)
        target/release/auto-client --plugins plugins.toml collect --mode salt --hosts-file "$dir/minions.txt" \
            --salt-command "$salt" --salt-config-dir "$conf" --workers "$n" > "$dir/reports.json" 2> "$dir/client.log"
        t1=$(date +%s.%N)
        "$salt" -c "$conf" -L "$list" grains.items --out=json --static -t 60 > /dev/null 2>&1
        t2=$(date +%s.%N)
        ok=$(grep -c '"schema"' "$dir/reports.json" || true)
        [ "$ok" = "$n" ] || echo "bench-salt-client.sh: run $r: $ok of $n reports (see $dir/client.log)" >&2
        ac+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')")
        gr+=("$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.3f", b - a}')")
    done
    median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    a=$(median "${ac[@]}"); g=$(median "${gr[@]}")
    awk -v n="$n" -v a="$a" -v g="$g" -v all="${ac[*]} / ${gr[*]}" 'BEGIN {
        printf "| %d | %.2f s, %.1f minions/s | %.2f s, %.1f minions/s | %s |\n", n, a, n/a, g, n/g, all }'
done
