#!/usr/bin/env bash
# bench-ssh.sh: fan out to N testbed hosts with six clients, in one run, and compare.
#
#   scripts/bench-ssh.sh [-n N] [--runs R] [--dir DIR] [--skip-ansible] [--keep] [--clients "A B"]
#
#   openssh   parallel `ssh host true`, KexAlgorithms curve25519-sha256 (the floor: connect only)
#   paramiko  Python paramiko + thread pool of N, 6 commands a host, TCP_NODELAY (the classic design)
#   ansible   `ansible all -m setup -f N` (the fact gatherer ops know)
#   fanout    ssh-exec's example: thread pool of N, 3 commands + 3 file reads a host
#   fanout --true  the same, connect and `true` only: the like-for-like of the OpenSSH floor
#   autoclient  `auto-client collect --mode ssh` with the six original collectors (os, cpu, memory,
#               disk, nic, board: plugins.toml's tables of them, same paths and settings)
#   autoclient12  the same with every collector of plugins.toml (twelve: the six and issue 11's
#               virt, packages, services, gpu, controller, psu; what users run)
#
# Each client runs R times (default 3), alternating, the order reversed every other run
# (--clients: only these, e.g. "openssh autoclient autoclient_base"); the table shows per client the medians of: wall
# time; client CPU per host (user+sys of the client and all its children, getrusage through
# /usr/bin/time); machine CPU per host (the busy jiffies of /proc/stat over the run: client, sshd
# and the commands on the "targets", and whatever else runs); target CPU per host (what the
# testbed hosts' sshd listeners reaped over the run, cutime + cstime: each connection's sshd and
# every command it ran, and nothing else on the machine; clock ticks of 10 ms summed over N hosts;
# to compare with `ssh true`'s; before 2026-12-02 this was machine minus client CPU, which counted
# every other process on the shared machine too). The load average is
# printed before and after. Last, issue 14's two ratios for each auto-client: its wall over
# OpenSSH `ssh true`'s (goal: at most 1.25) and its target CPU per host minus `ssh true`'s (goal: at
# most 5 ms). The fake hosts share this machine's cores: wall time is bounded by
# sshd's CPU, client CPU is the number that says what the client costs. Uses the testbed in DIR if it has N hosts up, else brings
# one up (and takes it down at the end unless --keep). Needs root. Installs what it needs:
# apt: openssh-server iproute2 ansible time python3-venv; pip (venv under target/): paramiko.
# BENCH_BASE=DIR: another checkout of auto-client whose release build (auto-client and the
# collectors, built there beforehand) runs in the same rounds with its six collectors, as
# `autoclient_base` (the same-run baseline of a change).
set -euo pipefail

N=100
RUNS=3
DIR=${AUTO_TESTBED_DIR:-/tmp/auto-testbed}
SKIP_ANSIBLE=0
KEEP=0
ONLY=
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) N=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --skip-ansible) SKIP_ANSIBLE=1; shift ;;
        --keep) KEEP=1; shift ;;
        --clients) ONLY=$2; shift 2 ;;
        *) echo "bench-ssh.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTBED="$ROOT/scripts/testbed.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV="$ROOT/target/bench-venv"
OUT=$(mktemp -d /tmp/bench-ssh.XXXXXX)

need_apt=()
[[ -x /usr/bin/time ]] || need_apt+=(time)
[[ $SKIP_ANSIBLE == 1 ]] || command -v ansible >/dev/null || need_apt+=(ansible)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [[ ${#need_apt[@]} -gt 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null >/dev/null
    apt-get install -y -qq "${need_apt[@]}" </dev/null >/dev/null
fi
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import paramiko' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q paramiko </dev/null
fi

(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build -q --release -p ssh-exec --example fanout)
FANOUT="$TARGET/release/examples/fanout"
# auto-client itself, with the shipped collectors (plugins.toml points at target/release)
COLLECTORS=$(grep -c '^\[plugins\.' "$ROOT/plugins.toml")
# one "-p collector-NAME" pair per collector of plugins.toml: the word splitting is wanted
# shellcheck disable=SC2046
(cd "$ROOT" && cargo build -q --release -p auto-client $(sed -n 's/^\[plugins\.\(.*\)\]$/-p collector-\1/p' "$ROOT/plugins.toml"))
AUTOCLIENT="$ROOT/target/release/auto-client"
# six_toml CHECKOUT: the six original collectors, that checkout's plugins.toml tables of them as
# they are, paths made absolute
six_toml() {
    awk '/^\[plugins\./ { started = 1; keep = ($0 ~ /^\[plugins\.(os|cpu|memory|disk|nic|board)\]/) }
         keep || !started { print }' "$1/plugins.toml" |
        sed "s#^path = \"target/#path = \"$1/target/#; s#^dirs = .*#dirs = []#"
}
SIX="$OUT/plugins-six.toml"
six_toml "$ROOT" >"$SIX"
[[ $(grep -c '^\[plugins\.' "$SIX") == 6 ]] || { echo "bench-ssh.sh: $SIX lacks some of the six" >&2; exit 1; }
BASE=${BENCH_BASE:-}
BASE_SIX="$OUT/plugins-six-base.toml"
if [[ -n $BASE ]]; then
    BASE=$(cd "$BASE" && pwd)
    [[ -x $BASE/target/release/auto-client ]] || { echo "bench-ssh.sh: no release build in $BASE" >&2; exit 2; }
    six_toml "$BASE" >"$BASE_SIX"
    echo "baseline: $BASE at $(git -C "$BASE" rev-parse --short HEAD)"
fi

BROUGHT_UP=0
if ! "$TESTBED" status --dir "$DIR" 2>/dev/null | grep -q ": $N of $N hosts running"; then
    "$TESTBED" up "$N" --dir "$DIR"
    BROUGHT_UP=1
fi
cleanup() {
    if [[ $BROUGHT_UP == 1 && $KEEP == 0 ]]; then "$TESTBED" down --dir "$DIR" >/dev/null; fi
    rm -rf "$OUT"
}
trap cleanup EXIT

# ansible: inventory from hosts.txt, OpenSSH settings from the testbed's ssh_config
cat >"$OUT/ansible.cfg" <<EOF
[defaults]
host_key_checking = True
gathering = explicit
interpreter_python = /usr/bin/python3
forks = $N
timeout = 30
[ssh_connection]
ssh_args = -F $DIR/ssh_config -o ControlMaster=no
pipelining = True
EOF
{
    echo "[testbed]"
    awk '{print $1 " ansible_host=" $2 " ansible_user=root"}' "$DIR/hosts.txt"
} >"$OUT/inventory"

openssh() {
    while read -r name _; do
        ssh -n -F "$DIR/ssh_config" -o KexAlgorithms=curve25519-sha256 "$name" true &
    done <"$DIR/hosts.txt"
    wait
}
paramiko() { "$VENV/bin/python" "$ROOT/scripts/bench-paramiko.py" "$DIR" "$N" >/dev/null; }
ansible_setup() {
    ANSIBLE_CONFIG="$OUT/ansible.cfg" ansible testbed -i "$OUT/inventory" -m setup -f "$N" >"$OUT/ansible.log" 2>&1
}
fanout() { "$FANOUT" --dir "$DIR" --workers "$N" --quiet >/dev/null; }
fanout_true() { "$FANOUT" --dir "$DIR" --workers "$N" --quiet --true >/dev/null; }
# collect PLUGINS_TOML LOG
collect() {
    "$AUTOCLIENT" --plugins "$1" collect --mode ssh --hosts-file "$DIR/hosts.txt" \
        --ssh-identity "$DIR/id_ed25519" --known-hosts "$DIR/known_hosts" --workers "$N" >/dev/null 2>"$2"
}
autoclient() { collect "$SIX" "$OUT/autoclient.log"; }
autoclient12() { collect "$ROOT/plugins.toml" "$OUT/autoclient12.log"; }
autoclient_base() { AUTOCLIENT="$BASE/target/release/auto-client" collect "$BASE_SIX" "$OUT/autoclient_base.log"; }
export -f openssh paramiko ansible_setup fanout fanout_true collect autoclient autoclient12 autoclient_base
export DIR N VENV ROOT OUT FANOUT AUTOCLIENT SIX BASE BASE_SIX

clients=(openssh fanout_true paramiko fanout autoclient autoclient12)
[[ -z $BASE ]] || clients+=(autoclient_base)
[[ $SKIP_ANSIBLE == 1 ]] || clients+=(ansible_setup)
if [[ -n $ONLY ]]; then
    # shellcheck disable=SC2206 # a list of words, split on purpose
    clients=($ONLY)
fi

# busy jiffies of the whole machine (user nice system irq softirq steal)
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# CPU jiffies the testbed hosts' sshd listeners have reaped (cutime + cstime): every connection's
# sshd and everything it ran on the "target", once the connection has ended; nothing else counts,
# whatever else runs on the machine.
sshd_reaped() {
    local stats=() kids=() p pid c
    for p in "$DIR"/hosts/node-*/pid; do
        pid=$(cat "$p")
        kids=()
        # one line of pids, without a newline at its end: read fills the array and returns 1
        { read -ra kids <"/proc/$pid/task/$pid/children"; } 2>/dev/null || true
        for c in "${kids[@]}"; do stats+=("/proc/$c/stat"); done
    done
    ((${#stats[@]})) || { echo 0; return; }
    awk '{t += $16 + $17} END {print t + 0}' "${stats[@]}"
}
HZ=$(getconf CLK_TCK)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= RUNS; r++)); do
    # the order reversed every other run: a client's connections that end after its run (their
    # sshd reaped later) and the state it leaves must not weigh on the same neighbour every time
    order=("${clients[@]}")
    if ((r % 2 == 0)); then
        order=()
        for ((i = ${#clients[@]} - 1; i >= 0; i--)); do order+=("${clients[i]}"); done
    fi
    for c in "${order[@]}"; do
        s0=$(sshd_reaped)
        b0=$(busy)
        if ! /usr/bin/time -f '%e %U %S' -o "$OUT/$c.$r" bash -c "$c"; then
            echo "bench-ssh.sh: run $r of $c failed (see above; ansible: $OUT/ansible.log)" >&2
            [[ $c != ansible_setup ]] || tail -5 "$OUT/ansible.log" >&2
        fi
        echo $(($(busy) - b0)) >"$OUT/$c.$r.busy"
        sleep 0.5 # the last connections' sshd processes end and are reaped
        echo $(($(sshd_reaped) - s0)) >"$OUT/$c.$r.sshd"
        [[ $c != autoclient* ]] || grep -E '^[0-9]+ hosts: ' "$OUT/$c.log" | sed "s/^/run $r $c: /" >&2
        tail -1 "$OUT/$c.$r" | sed "s/^/run $r $c: wall user sys = /;s/\$/, machine busy $(cat "$OUT/$c.$r.busy") jiffies/" >&2
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\n%s hosts, median of %s runs, %s, load average before %s, after %s\n' "$N" "$RUNS" \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-45s | %8s | %18s | %19s | %18s |\n' "client" "wall s" "client CPU ms/host" \
    "machine CPU ms/host" "target CPU ms/host"
printf '| %-45s | %8s | %18s | %19s | %18s |\n' "---" "---:" "---:" "---:" "---:"
for c in "${clients[@]}"; do
    case $c in
        openssh) label="OpenSSH ssh host true, curve25519-sha256" ;;
        paramiko) label="paramiko + thread pool, 6 commands, NODELAY" ;;
        fanout) label="ssh-exec fanout, 6 requests" ;;
        fanout_true) label="ssh-exec fanout --true (connect + true)" ;;
        autoclient) label="auto-client collect --mode ssh, 6 collectors" ;;
        autoclient12) label="auto-client collect --mode ssh, $COLLECTORS collectors" ;;
        autoclient_base) label="baseline $(git -C "$BASE" rev-parse --short HEAD), 6 collectors" ;;
        ansible_setup) label="ansible -m setup -f $N" ;;
    esac
    wall=$(for r in $(seq 1 "$RUNS"); do tail -1 "$OUT/$c.$r" | awk '{print $1}'; done | median)
    cpu=$(for r in $(seq 1 "$RUNS"); do tail -1 "$OUT/$c.$r" | awk -v n="$N" '{printf "%.1f\n", ($2 + $3) * 1000 / n}'; done | median)
    machine=$(for r in $(seq 1 "$RUNS"); do awk -v n="$N" -v hz="$HZ" '{printf "%.1f\n", $1 * 1000 / hz / n}' "$OUT/$c.$r.busy"; done | median)
    target=$(for r in $(seq 1 "$RUNS"); do awk -v n="$N" -v hz="$HZ" '{printf "%.1f\n", $1 * 1000 / hz / n}' "$OUT/$c.$r.sshd"; done | median)
    printf '| %-45s | %8s | %18s | %19s | %18s |\n' "$label" "$wall" "$cpu" "$machine" "$target"
    echo "$c $wall $target" >>"$OUT/medians"
done

# issue 14: wall at most 1.25x `ssh true`'s, target CPU at most 5 ms a host above `ssh true`'s
grep -q '^openssh ' "$OUT/medians" || exit 0
read -r _ floor_wall floor_target < <(grep '^openssh ' "$OUT/medians")
printf '\nissue 14, against OpenSSH ssh host true (wall %s s, target CPU %s ms/host):\n' "$floor_wall" "$floor_target"
for c in autoclient autoclient12 autoclient_base; do
    grep -q "^$c " "$OUT/medians" || continue
    read -r _ wall target < <(grep "^$c " "$OUT/medians")
    awk -v c="$c" -v w="$wall" -v t="$target" -v fw="$floor_wall" -v ft="$floor_target" 'BEGIN {
        printf "  %-13s wall %.2fx (goal <= 1.25x), target CPU %+.1f ms/host (goal <= +5 ms)\n", c, w / fw, t - ft }'
done
