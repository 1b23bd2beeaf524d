#!/usr/bin/env bash
# bench-fleet.sh: one ssh-mode run over many targets, for memory (issue 14: 10,000 targets, max RSS
# at most 100 MB).
#
#   scripts/bench-fleet.sh [-n HOSTS] [-t TARGETS] [-w WORKERS] [--runs R] [--dir DIR] [--keep]
#                          [--base BINARY]
#
# Brings up HOSTS testbed hosts (scripts/testbed.sh, in DIR; kept if already up), writes TARGETS
# target names t00001.. round-robin over them (`NAME ADDRESS`: known_hosts matches the address),
# and runs `auto-client collect --mode ssh --format json --workers WORKERS` with every collector of
# plugins.toml under /usr/bin/time, stdout to /dev/null. With --base, that binary (e.g. main's
# before a change) runs too, alternating with this build's, R times each (default 1). Prints per
# run: wall, ok and failed (the closing summary), max RSS, and the median of each; the load average
# before and after. Defaults: 100 hosts, 1,000 targets, 200 workers. Needs root.
set -euo pipefail

HOSTS=100
TARGETS=1000
WORKERS=200
RUNS=1
DIR=${AUTO_TESTBED_DIR:-/tmp/auto-testbed}
KEEP=0
BASE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) HOSTS=$2; shift 2 ;;
        -t) TARGETS=$2; shift 2 ;;
        -w) WORKERS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --base) BASE=$2; shift 2 ;;
        *) echo "bench-fleet.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTBED="$ROOT/scripts/testbed.sh"
OUT=$(mktemp -d /tmp/bench-fleet.XXXXXX)
[[ -x /usr/bin/time ]] || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time </dev/null >/dev/null; }

# one "-p collector-NAME" pair per collector of plugins.toml: the word splitting is wanted
# shellcheck disable=SC2046
(cd "$ROOT" && cargo build -q --release -p auto-client $(sed -n 's/^\[plugins\.\(.*\)\]$/-p collector-\1/p' "$ROOT/plugins.toml"))
THIS="$ROOT/target/release/auto-client"

BROUGHT_UP=0
running=$("$TESTBED" status --dir "$DIR" 2>/dev/null | sed -n 's/.*: \([0-9]*\) of [0-9]* hosts running.*/\1/p')
if [[ ${running:-0} -lt $HOSTS ]]; then
    "$TESTBED" up "$HOSTS" --dir "$DIR" >&2
    BROUGHT_UP=1
fi
cleanup() { [[ $BROUGHT_UP == 0 || $KEEP == 1 ]] || "$TESTBED" down --dir "$DIR" >&2; }
trap cleanup EXIT

# TARGETS names round-robin over the first HOSTS hosts
head -n "$HOSTS" "$DIR/hosts.txt" | awk -v t="$TARGETS" '{ addr[NR - 1] = $2 }
    END { for (i = 0; i < t; i++) printf "t%05d %s\n", i + 1, addr[i % NR] }' >"$OUT/targets.txt"

run() { # LABEL BINARY RUN
    local log="$OUT/$1.$3"
    /usr/bin/time -f '%e %M' -o "$log.time" "$2" --plugins "$ROOT/plugins.toml" collect --mode ssh \
        --format json --hosts-file "$OUT/targets.txt" --ssh-identity "$DIR/id_ed25519" \
        --known-hosts "$DIR/known_hosts" --workers "$WORKERS" >/dev/null 2>"$log" || true
    local summary wall rss
    summary=$(grep -E '^[0-9]+ hosts: ' "$log" | tail -1)
    read -r wall rss <"$log.time"
    printf '%-5s run %s: %7s s, max RSS %6.1f MB, %s\n' "$1" "$3" "$wall" "$(echo "$rss / 1024" | bc -l)" \
        "${summary:-no summary (see $log)}"
    echo "$1 $wall $rss" >>"$OUT/runs"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$TARGETS targets over $HOSTS hosts, --workers $WORKERS, $(grep -c '^\[plugins\.' "$ROOT/plugins.toml") collectors; load before $LOAD_BEFORE"
for ((r = 1; r <= RUNS; r++)); do
    [[ -z "$BASE" ]] || run base "$BASE" "$r"
    run this "$THIS" "$r"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for label in base this; do
    grep -q "^$label " "$OUT/runs" || continue
    wall=$(awk -v l="$label" '$1 == l {print $2}' "$OUT/runs" | median)
    rss=$(awk -v l="$label" '$1 == l {print $3}' "$OUT/runs" | median)
    printf '%-5s median of %s: %s s, max RSS %.1f MB\n' "$label" "$RUNS" "$wall" "$(echo "$rss / 1024" | bc -l)"
done
echo "load after $(cut -d' ' -f1-3 /proc/loadavg); logs in $OUT"
