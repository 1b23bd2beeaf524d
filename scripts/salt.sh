#!/usr/bin/env bash
# A real Salt master and N minions on this machine, for salt mode (issue 6).
#
#   scripts/salt.sh up N [--dir DIR]        install Salt (cached venv), start master + minion-01..N,
#                                          accept their keys, wait until every minion answers test.ping
#   scripts/salt.sh down [--dir DIR]        stop what `up` started under DIR (by pid file), nothing else
#   scripts/salt.sh stop-minion ID [--dir DIR]   stop one minion: it stays accepted but no longer answers
#   scripts/salt.sh start-minion ID [--dir DIR]  start it again and wait for its test.ping
#   scripts/salt.sh status [--dir DIR]      print what runs
#
# Idempotent, for root, never reads stdin. Everything listens on 127.0.0.1 only, on two free ports
# picked on the first `up` and kept in DIR/salt.env.
#
# DIR (default: <repo>/target/salt) gets:
#   DIR/master/master        the master config; `salt -c DIR/master ...` talks to this master
#   DIR/master-config-dir    one line: the path DIR/master (what salt-exec's SaltConfig wants)
#   DIR/minions.txt          the minion ids, one a line
#   DIR/salt.env             SALT_VENV, SALT_BIN, SALT_CONFIG_DIR, SALT_PUB_PORT, SALT_RET_PORT
#   DIR/minions/ID/minion    each minion's own config; its pki, cache, sockets, log in DIR/minions/ID/root
#   DIR/master-root          the master's pki, cache, sockets, master.log
# Salt's root_dir for each daemon is a short symlink /tmp/auto-salt.<hash of DIR>/NAME into DIR
# (unix socket paths must stay short); `down` removes the symlinks. SALT_LOG_LEVEL=debug for logs.
#
# Environment: SALT_VENV (default <repo>/target/salt-venv) where Salt is installed; shared by every
# DIR, so a second `up` (or a test's own DIR) reuses it. PYTHON (default python3, >= 3.10).
set -euo pipefail
exec </dev/null

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
REQS="$HERE/salt-requirements.txt"
SALT_VENV="${SALT_VENV:-$REPO/target/salt-venv}"
PYTHON="${PYTHON:-python3}"

die() { echo "salt.sh: $*" >&2; exit 2; }
log() { echo "salt.sh: $*" >&2; }

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------- arguments
CMD="${1:-}"; [ -n "$CMD" ] || usage; shift
POS=()
DIR="$REPO/target/salt"
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) [ $# -ge 2 ] || die "--dir needs a value"; DIR="$2"; shift 2 ;;
        --dir=*) DIR="${1#--dir=}"; shift ;;
        -h|--help) usage ;;
        *) POS+=("$1"); shift ;;
    esac
done
if [ "$CMD" = up ]; then
    mkdir -p "$DIR"
elif [ ! -d "$DIR" ]; then
    [ "$CMD" = down ] && exit 0   # nothing was ever set up there: nothing to stop
    die "nothing set up in $DIR"
fi
DIR="$(cd "$DIR" && pwd)"
SOCK_ROOT="/tmp/auto-salt.$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)"
MASTER_CONF="$DIR/master"

[ "$(id -u)" = 0 ] || die "run as root (salt-master and the minions run as root here)"

# ---------------------------------------------------------------- install
venv_ok() {
    [ -x "$SALT_VENV/bin/salt" ] && [ -f "$SALT_VENV/.requirements" ] \
        && cmp -s "$SALT_VENV/.requirements" "$REQS"
}

install_salt() {
    venv_ok && return 0
    log "installing Salt into $SALT_VENV (pip, a minute the first time)"
    local lock="$SALT_VENV.lock"
    mkdir -p "$(dirname "$SALT_VENV")"
    (
        flock 9
        venv_ok && exit 0
        rm -rf "$SALT_VENV"
        "$PYTHON" -m venv "$SALT_VENV"
        "$SALT_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$REQS"
        "$SALT_VENV/bin/salt" --version >/dev/null
        cp "$REQS" "$SALT_VENV/.requirements"
    ) 9>"$lock"
    venv_ok || die "Salt install into $SALT_VENV failed"
}

# ---------------------------------------------------------------- processes
# Salt daemonises with -d (double fork + setsid): the pid in its pid file leads its own process
# group, so `kill -- -PID` ends that daemon and its workers and nothing else.
pid_of() {  # pidfile -> pid if that process is alive and is a salt process
    local f="$1" pid
    [ -f "$f" ] || return 1
    pid="$(cat "$f" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "salt" || return 1
    echo "$pid"
}

stop_pidfile() {  # pidfile name
    local f="$1" name="$2" pid pgid i
    pid="$(pid_of "$f")" || { rm -f "$f"; return 0; }
    # salt -d forks, calls setsid, forks again: the daemon and its workers share a process group
    # (the pgid of the session) that nothing else on the machine has.
    pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')"
    [[ "$pgid" =~ ^[0-9]+$ ]] && [ "$pgid" -gt 1 ] || pgid=""
    if [ -n "$pgid" ]; then kill -TERM -- "-$pgid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name still running 5s after TERM (salt 3007 minions are slow to exit): killed"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # workers left behind by a daemon killed mid-way
    [ -z "$pgid" ] || kill -KILL -- "-$pgid" 2>/dev/null || true
    rm -f "$f"
}

load_env() {
    [ -f "$DIR/salt.env" ] || die "nothing set up in $DIR (run: salt.sh up N --dir $DIR)"
    # shellcheck disable=SC1091
    . "$DIR/salt.env"
}

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

write_master_config() {
    mkdir -p "$MASTER_CONF" "$DIR/master-root/sock" "$SOCK_ROOT"
    # Salt puts root_dir in front of every path that is not already under it, and unix socket
    # paths must stay under ~100 bytes: root_dir is a short symlink into DIR.
    ln -sfn "$DIR/master-root" "$SOCK_ROOT/master"
    local r="$SOCK_ROOT/master"
    cat >"$MASTER_CONF/master" <<EOF
# written by scripts/salt.sh; regenerated on every up
id: auto-salt-master
user: root
interface: 127.0.0.1
ipv6: False
publish_port: $SALT_PUB_PORT
ret_port: $SALT_RET_PORT
root_dir: $r
pki_dir: $r/pki
cachedir: $r/cache
sock_dir: $r/sock
pidfile: $r/salt-master.pid
log_file: $r/master.log
key_logfile: $r/key.log
log_level_logfile: ${SALT_LOG_LEVEL:-warning}
# small fleet on 2 cores: a few MWorkers are plenty
worker_threads: 4
# CLI waits this long before asking minions whether the job still runs
timeout: 10
gather_job_timeout: 5
keep_jobs_seconds: 3600
file_roots:
  base:
    - $r/srv
EOF
    echo "$MASTER_CONF" >"$DIR/master-config-dir"
}

minion_dir() { echo "$DIR/minions/$1"; }

write_minion_config() {
    local id="$1" d
    d="$(minion_dir "$id")"
    mkdir -p "$d/root/sock" "$SOCK_ROOT"
    ln -sfn "$d/root" "$SOCK_ROOT/$id"
    local r="$SOCK_ROOT/$id"
    cat >"$d/minion" <<EOF
# written by scripts/salt.sh; regenerated on every up
id: $id
user: root
master: 127.0.0.1
master_port: $SALT_RET_PORT
publish_port: $SALT_PUB_PORT
ipv6: False
root_dir: $r
pki_dir: $r/pki
cachedir: $r/cache
sock_dir: $r/sock
pidfile: $r/salt-minion.pid
log_file: $r/minion.log
log_level_logfile: ${SALT_LOG_LEVEL:-warning}
# jobs run as threads of the minion, not as a forked process each: a job's process took ~0.7 s
# from fork to start here, and 20 minions on 2 cores all fork at once
multiprocessing: False
# a loaded master answers returns late: wait and retry longer before a return is given up
return_retry_timer: 15
return_retry_timer_max: 25
return_retry_tries: 5
# retry quickly while the key waits for salt-key -A
acceptance_wait_time: 1
acceptance_wait_time_max: 2
random_reauth_delay: 0
# no reverse DNS lookups at start (slow, and meaningless on one machine)
enable_fqdns_grains: False
grains_cache: True
EOF
}

minion_pidfile() { echo "$(minion_dir "$1")/root/salt-minion.pid"; }
master_pidfile() { echo "$DIR/master-root/salt-master.pid"; }

start_master() {
    if pid_of "$(master_pidfile)" >/dev/null; then return 0; fi
    "$SALT_VENV/bin/salt-master" -c "$MASTER_CONF" -d
}

# Each minion is its own machine as far as a collector can tell: its own UTS namespace (hostname =
# its id) and mount namespace (a private /etc/machine-id), like the SSH testbed's hosts.
start_minion() {
    local id="$1" d
    d="$(minion_dir "$id")"
    if pid_of "$(minion_pidfile "$id")" >/dev/null; then return 0; fi
    [ -s "$d/machine-id" ] || { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; echo; } >"$d/machine-id"
    # shellcheck disable=SC2016 # $1..$3 are the inner sh's arguments, not this script's
    unshare --uts --mount sh -c 'hostname "$1" && mount --bind "$2/machine-id" /etc/machine-id && exec "$3" -c "$2" -d' \
        _ "$id" "$d" "$SALT_VENV/bin/salt-minion"
}

# wait until every id in "$@" answers test.ping; $TIMEOUT_S seconds at most
wait_ping() {
    local deadline=$(( $(date +%s) + ${WAIT_S:-180} )) missing out
    while :; do
        "$SALT_VENV/bin/salt-key" -c "$MASTER_CONF" -A -y >/dev/null 2>&1 || true
        out="$("$SALT_VENV/bin/salt" -c "$MASTER_CONF" -L "$(IFS=,; echo "$*")" test.ping \
            --out=json --static -t 5 2>/dev/null || true)"
        missing="$("$SALT_VENV/bin/python" - "$out" "$@" <<'PY'
import json, sys
try:
    got = json.loads(sys.argv[1] or "{}")
except ValueError:
    got = {}
print(" ".join(m for m in sys.argv[2:] if got.get(m) is not True))
PY
)"
        [ -z "$missing" ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            die "minions did not answer test.ping: $missing (logs: $DIR/minions/ID/root/minion.log)"
        fi
        sleep 1
    done
}

minion_ids() {  # N -> minion-01 .. minion-N
    local i
    for i in $(seq 1 "$1"); do printf 'minion-%02d\n' "$i"; done
}

# ---------------------------------------------------------------- commands
cmd_up() {
    local n="${POS[0]:-}" id t0
    if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 99 ]; then die "up needs a minion count 1..99"; fi
    t0=$(date +%s.%N)
    install_salt
    if [ -f "$DIR/salt.env" ]; then
        # shellcheck disable=SC1091
        . "$DIR/salt.env"
    else
        SALT_PUB_PORT="$(free_port)"; SALT_RET_PORT="$(free_port)"
        while [ "$SALT_RET_PORT" = "$SALT_PUB_PORT" ]; do SALT_RET_PORT="$(free_port)"; done
    fi
    cat >"$DIR/salt.env" <<EOF
SALT_VENV=$SALT_VENV
SALT_BIN=$SALT_VENV/bin/salt
SALT_CONFIG_DIR=$MASTER_CONF
SALT_PUB_PORT=$SALT_PUB_PORT
SALT_RET_PORT=$SALT_RET_PORT
EOF
    write_master_config
    start_master

    # minions beyond N from an earlier, larger up: stop them and forget their keys
    if [ -d "$DIR/minions" ]; then
        for d in "$DIR"/minions/*/; do
            id="$(basename "$d")"
            if ! minion_ids "$n" | grep -qx "$id"; then
                stop_pidfile "$(minion_pidfile "$id")" "$id"
                "$SALT_VENV/bin/salt-key" -c "$MASTER_CONF" -d "$id" -y >/dev/null 2>&1 || true
                rm -rf "$d"; rm -f "${SOCK_ROOT:?}/$id"
            fi
        done
    fi
    minion_ids "$n" >"$DIR/minions.txt"
    for id in $(minion_ids "$n"); do
        write_minion_config "$id"
        start_minion "$id"
    done
    # shellcheck disable=SC2046
    wait_ping $(minion_ids "$n")
    log "up: master + $n minions in $DIR ($(awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN{printf \"%.1f\", b-a}")s)"
    echo "$MASTER_CONF"
}

cmd_down() {
    local d id
    if [ -d "$DIR/minions" ]; then
        for d in "$DIR"/minions/*/; do
            [ -d "$d" ] || continue
            id="$(basename "$d")"
            stop_pidfile "$(minion_pidfile "$id")" "$id" &
        done
        wait
    fi
    stop_pidfile "$(master_pidfile)" master
    rm -rf "$SOCK_ROOT"
    log "down: nothing of $DIR runs any more"
}

cmd_stop_minion() {
    local id="${POS[0]:-}"
    [ -n "$id" ] || die "stop-minion needs a minion id"
    load_env
    [ -d "$(minion_dir "$id")" ] || die "no minion $id in $DIR"
    stop_pidfile "$(minion_pidfile "$id")" "$id"
    log "stopped $id"
}

cmd_start_minion() {
    local id="${POS[0]:-}"
    [ -n "$id" ] || die "start-minion needs a minion id"
    load_env
    [ -d "$(minion_dir "$id")" ] || die "no minion $id in $DIR"
    start_minion "$id"
    wait_ping "$id"
    log "started $id"
}

cmd_status() {
    local d id pid
    load_env
    if pid="$(pid_of "$(master_pidfile)")"; then echo "master running pid $pid"; else echo "master stopped"; fi
    for d in "$DIR"/minions/*/; do
        [ -d "$d" ] || continue
        id="$(basename "$d")"
        if pid="$(pid_of "$(minion_pidfile "$id")")"; then echo "$id running pid $pid"; else echo "$id stopped"; fi
    done
}

case "$CMD" in
    up) cmd_up ;;
    down) cmd_down ;;
    stop-minion) cmd_stop_minion ;;
    start-minion) cmd_start_minion ;;
    status) cmd_status ;;
    install) install_salt ;;
    *) usage ;;
esac
