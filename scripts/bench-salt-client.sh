#!/usr/bin/env bash
# Benchmark: `auto-client collect --mode salt` with the collectors of plugins.toml (all twelve) on N
# minions, beside Salt's own `salt -L ... grains.items` and `salt -L ... test.ping` (the transport's
# floor) on the same minions, in one run. Prints seconds and minions per second.
# Usage: RUNS=3 scripts/bench-salt-client.sh [N ...]   (default: 5 20; root; uses scripts/salt.sh)
# Per size: one untimed test.ping, then RUNS alternating runs of each; medians, and every run's
# time (a Salt CLI run that stalls ~60 s shows there); the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(5 20)
RUNS=${RUNS:-3}
# shellcheck disable=SC2046 # one "-p collector-NAME" pair per collector of plugins.toml
cargo build --release --quiet -p auto-client $(sed -n 's/^\[plugins\.\(.*\)\]$/-p collector-\1/p' plugins.toml)
collectors=$(grep -c '^\[plugins\.' plugins.toml)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)"
dir=$(mktemp -d /tmp/bench-salt-client.XXXXXX)
trap 'scripts/salt.sh down --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
salt=target/salt-venv/bin/salt
printf '| minions | auto-client collect --mode salt, %s collectors (median) | salt grains.items (median) | salt test.ping (median) | all runs, s (ours / grains / ping) |\n|---|---|---|---|---|\n' "$collectors"
for n in "${sizes[@]}"; do
    scripts/salt.sh up "$n" --dir "$dir" >/dev/null
    conf=$(cat "$dir/master-config-dir")
    list=$(paste -sd, "$dir/minions.txt")
    # warm-up, untimed: the first job after the minions come up can stall in Salt itself
    "$salt" -c "$conf" -L "$list" test.ping --out=json --static -t 60 > /dev/null 2>&1 || true
    ac=(); gr=(); pi=()
    for r in $(seq 1 "$RUNS"); do
        t0=$(date +%s.%N)
        target/release/auto-client --plugins plugins.toml collect --mode salt --hosts-file "$dir/minions.txt" \
            --salt-command "$salt" --salt-config-dir "$conf" --workers "$n" > "$dir/reports.json" 2> "$dir/client.log"
        t1=$(date +%s.%N)
        "$salt" -c "$conf" -L "$list" grains.items --out=json --static -t 60 > /dev/null 2>&1
        t2=$(date +%s.%N)
        "$salt" -c "$conf" -L "$list" test.ping --out=json --static -t 60 > /dev/null 2>&1
        t3=$(date +%s.%N)
        ok=$(grep -c '"schema"' "$dir/reports.json" || true)
        [ "$ok" = "$n" ] || echo "bench-salt-client.sh: run $r: $ok of $n reports (see $dir/client.log)" >&2
        ac+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')")
        gr+=("$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.3f", b - a}')")
        pi+=("$(awk -v a="$t2" -v b="$t3" 'BEGIN {printf "%.3f", b - a}')")
    done
    median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    a=$(median "${ac[@]}"); g=$(median "${gr[@]}"); p=$(median "${pi[@]}")
    awk -v n="$n" -v a="$a" -v g="$g" -v p="$p" -v all="${ac[*]} / ${gr[*]} / ${pi[*]}" 'BEGIN {
        printf "| %d | %.2f s, %.1f minions/s | %.2f s, %.1f minions/s | %.2f s | %s |\n", n, a, n/a, g, n/g, p, all }'
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
