#!/usr/bin/env bash
# Minions collected per second through Salt (issue 6): salt-exec's chosen method (one job per
# batch: the six collector commands on all minions at once, through the long-lived helper), the
# same client one job per command, and the baseline `salt -L <minions> grains.items` on the same
# minions. Brings up its own master + 20 minions (scripts/salt.sh, --dir target-salt/bench-salt)
# and takes them down again.
#
#   scripts/bench-salt.sh [ROUNDS] [--methods]   (default 3 rounds; one line per measurement)
#   --methods also runs scripts/bench-salt-methods.py: the other ways of salt-exec/DESIGN.md
set -euo pipefail
exec </dev/null
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
ROUNDS=3; METHODS=0
for a in "$@"; do
    case "$a" in
        --methods) METHODS=1 ;;
        *[!0-9]*|"") echo "usage: bench-salt.sh [ROUNDS] [--methods]" >&2; exit 2 ;;
        *) ROUNDS="$a" ;;
    esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target-salt}"
DIR="$CARGO_TARGET_DIR/bench-salt"
SALT_VENV="${SALT_VENV:-$REPO/target/salt-venv}"

cleanup() { "$HERE/salt.sh" down --dir "$DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT

(cd "$REPO" && cargo build --quiet --release -p salt-exec --example bench)
BENCH="$CARGO_TARGET_DIR/release/examples/bench"

t0=$(date +%s.%N)
"$HERE/salt.sh" up 20 --dir "$DIR" >/dev/null
echo "start-up: master + 20 minions answering test.ping in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
ps -eo rss=,comm=,args= | awk -v d="$DIR/minions/" '$2 != "awk" && index($0, d) && /salt-minion/ {s+=$1; n++} END {printf "memory: %d minion processes, %.0f MB RSS in all, %.0f MB each\n", n, s/1024, s/1024/n}'
ps -eo rss=,comm=,args= | awk -v d="$DIR/master" '$2 != "awk" && index($0, d) && /salt-master/ {s+=$1; n++} END {printf "memory: %d master processes, %.0f MB RSS\n", n, s/1024}'

for n in 5 20; do
    minions="$(head -n "$n" "$DIR/minions.txt" | paste -sd, -)"
    "$BENCH" "$SALT_VENV" "$DIR/master" "$minions" batch "$ROUNDS"
    "$BENCH" "$SALT_VENV" "$DIR/master" "$minions" per-command "$ROUNDS"
    times=()
    for _ in $(seq 1 "$ROUNDS"); do
        t0=$(date +%s.%N)
        got="$("$SALT_VENV/bin/salt" -c "$DIR/master" -L "$minions" grains.items --out=json --static -t 60 \
            | "$SALT_VENV/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)))')"
        [ "$got" = "$n" ] || echo "grains.items: $got of $n minions answered" >&2
        times+=("$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b-a}')")
    done
    median="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
    awk -v n="$n" -v m="$median" -v r="$ROUNDS" -v all="${times[*]}" \
        'BEGIN{printf "salt grains.items    %2d minions: median %6.2fs over %d rounds = %6.2f minions/s (all: %s)\n", n, m, r, n/m, all}'
done

if [ "$METHODS" = 1 ]; then
    "$SALT_VENV/bin/python" "$HERE/bench-salt-methods.py" "$DIR/master" 5 a b b1 c c1 cb1 grains
    "$SALT_VENV/bin/python" "$HERE/bench-salt-methods.py" "$DIR/master" 20 b1 c cb1 grains
fi
