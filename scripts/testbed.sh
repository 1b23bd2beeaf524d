#!/usr/bin/env bash
# testbed.sh: many real OpenSSH hosts on this machine, one network namespace each.
#
#   testbed.sh up N   [--dir DIR] [--net A.B] [--name PREFIX] [--bridge BR]
#   testbed.sh down   [--dir DIR]
#   testbed.sh status [--dir DIR]
#   testbed.sh stop|start|rekey|hang|verbose|restore|freeze|thaw NODE [--dir DIR]
#
# Every host node-001..node-N is one network namespace PREFIX-node-NNN with a veth into the bridge BR
# on the root side, address A.B.x.y/16 (the /16 exists only on the interfaces this script creates;
# no default route). Its sshd runs as
#     ip netns exec NS unshare --uts --mount --pid --fork --kill-child --mount-proc sh start.sh
# where start.sh sets the hostname, bind-mounts a per-host /etc/hostname, /etc/machine-id, /root
# (a private home with stock dotfiles) and /etc/shadow (a private shadow with a test password for
# root), then execs `sshd -D -f CONFIG`. sshd is PID 1 of its own PID namespace, so killing the
# unshare process we started ends the host's sshd and every session and command under it.
#
# Written to DIR (default /tmp/auto-testbed):
#   hosts.txt        "node-001 10.251.0.2" lines
#   known_hosts      "node-001,10.251.0.2 ssh-ed25519 AAAA..." lines (the hosts' real keys)
#   id_ed25519       client key, authorised for root on every host (no passphrase)
#   id_ed25519_pass  client key with the passphrase in the file `passphrase`, authorised too
#   password         root's password on every host (PasswordAuthentication via a private shadow)
#   ssh_config       for OpenSSH: `ssh -F DIR/ssh_config node-001 hostname`
#   testbed.env      the settings of this testbed (net, prefix, bridge) for down/status/helpers
#   hosts/node-NNN/  host key, sshd_config, start.sh, pid, sshd.log, the private files
#
# Helpers for tests: stop/start a host's sshd (connection refused), rekey (new host key: a changed
# key for clients that trust known_hosts), hang (every command on that host hangs: ForceCommand
# sleep), verbose (LogLevel VERBOSE: sshd.log gets a "Starting session: command for root" line for
# every exec request, so a test can count the requests a host served), restore (normal config
# again), freeze/thaw (SIGSTOP the sshd: TCP connects, no banner).
#
# Idempotent: `up` keeps running hosts and existing keys, (re)creates what is missing, removes hosts
# above N. `down` kills only the PIDs this script recorded and deletes only the namespaces, links
# and bridge it created. Needs root; installs openssh-server and iproute2 if missing.
set -euo pipefail

die() { echo "testbed.sh: $*" >&2; exit 2; }

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

CMD=${1:-}
[[ -n "$CMD" ]] || usage
shift
N=""
NODE=""
DIR=${AUTO_TESTBED_DIR:-/tmp/auto-testbed}
NET=""
NAME=""
BRIDGE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
        --net) NET=${2:?--net needs a value}; shift 2 ;;
        --name) NAME=${2:?--name needs a value}; shift 2 ;;
        --bridge) BRIDGE=${2:?--bridge needs a value}; shift 2 ;;
        -h|--help) usage ;;
        -*) die "unknown option $1" ;;
        *)
            if [[ "$CMD" == up && -z "$N" ]]; then N=$1
            elif [[ -z "$NODE" ]]; then NODE=$1
            else die "unexpected argument $1"; fi
            shift ;;
    esac
done

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, bind mounts)"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
ENV_FILE="$DIR/testbed.env"

# Settings: command line, else what this DIR's testbed was created with, else defaults.
if [[ -f "$ENV_FILE" ]]; then
    # shellcheck disable=SC1090
    source <(grep -E '^TB_[A-Z]+=[A-Za-z0-9._-]*$' "$ENV_FILE")
fi
NET=${NET:-${TB_NET:-10.251}}
NAME=${NAME:-${TB_NAME:-atb}}
BRIDGE=${BRIDGE:-${TB_BRIDGE:-${NAME}0}}
[[ "$NET" =~ ^10\.[0-9]{1,3}$ ]] || die "--net must be the first two octets of a 10.x.0.0/16, like 10.251"
[[ "$NAME" =~ ^[a-z][a-z0-9]{0,5}$ ]] || die "--name must be 1-6 lower-case letters or digits"
[[ ${#BRIDGE} -le 15 ]] || die "--bridge name too long"

node_name() { printf 'node-%03d' "$1"; }
node_index() { local n=${1#node-}; echo $((10#$n)); }
node_addr() { local k=$(($1 + 1)); echo "$NET.$((k / 256)).$((k % 256))"; }
netns_of() { echo "$NAME-$(node_name "$1")"; }
veth_of() { echo "${NAME}v$1"; }

ensure_tools() {
    local missing=()
    [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
    command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v unshare >/dev/null || missing+=(util-linux)
    command -v openssl >/dev/null || missing+=(openssl)
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "testbed.sh: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
    fi
    mkdir -p /run/sshd
    chmod 755 /run/sshd
}

# pid_alive PID DIR-PATTERN: the process exists, is not a zombie and is one we started for this DIR.
pid_alive() {
    local pid=$1 host_dir=$2 state
    [[ -n "$pid" && -r /proc/$pid/stat ]] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ "$state" != Z && "$state" != X ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$host_dir/start.sh"
}

host_pid() { cat "$DIR/hosts/$1/pid" 2>/dev/null || true; }

# write_sshd_config I [EXTRA [LOGLEVEL]]
write_sshd_config() {
    local i=$1 extra=${2:-} loglevel=${3:-ERROR}
    local node h
    node=$(node_name "$i")
    h="$DIR/hosts/$node"
    cat >"$h/sshd_config" <<EOF
# written by testbed.sh for $node
ListenAddress $(node_addr "$i"):22
HostKey $h/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile $DIR/authorized_keys
# keys may sit under a world-writable directory (/tmp)
StrictModes no
PermitRootLogin yes
PubkeyAuthentication yes
# password login checks the private shadow bind-mounted in this host's mount namespace
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel $loglevel
MaxStartups 200:30:400
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com,ecdh-sha2-nistp256,diffie-hellman-group14-sha256
Subsystem sftp internal-sftp
$extra
EOF
}

write_start_script() {
    local i=$1 node h
    node=$(node_name "$i")
    h="$DIR/hosts/$node"
    cat >"$h/start.sh" <<EOF
# runs inside: ip netns exec $(netns_of "$i") unshare --uts --mount --pid --fork --mount-proc
set -e
mount --make-rprivate /
hostname $node
mount --bind $h/hostname /etc/hostname
mount --bind $h/machine-id /etc/machine-id
mount --bind $h/root /root
mount --bind $DIR/shadow /etc/shadow
exec /usr/sbin/sshd -D -f $h/sshd_config -E $h/sshd.log
EOF
}

start_host() {
    local i=$1 node h
    node=$(node_name "$i")
    h="$DIR/hosts/$node"
    : >"$h/sshd.log"
    setsid ip netns exec "$(netns_of "$i")" \
        unshare --uts --mount --pid --fork --kill-child=SIGKILL --mount-proc \
        /bin/sh "$h/start.sh" </dev/null >>"$h/sshd.log" 2>&1 &
    echo $! >"$h/pid"
}

stop_host() {
    local i=$1 node h pid
    node=$(node_name "$i")
    h="$DIR/hosts/$node"
    pid=$(host_pid "$node")
    if pid_alive "$pid" "$h"; then
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            pid_alive "$pid" "$h" || break
            sleep 0.02
        done
    fi
    rm -f "$h/pid"
}

# wait_listening I...: until each host's port 22 accepts a TCP connection (10 s at most).
wait_listening() {
    local i addr deadline=$((SECONDS + 10))
    for i in "$@"; do
        addr=$(node_addr "$i")
        until (exec 3<>"/dev/tcp/$addr/22") 2>/dev/null; do
            [[ $SECONDS -lt $deadline ]] || die "$(node_name "$i") ($addr): sshd not listening after 10 s; see $DIR/hosts/$(node_name "$i")/sshd.log"
            sleep 0.05
        done
    done
}

write_known_hosts() {
    local i node tmp
    tmp=$(mktemp "$DIR/.known_hosts.XXXXXX")
    : >"$DIR/hosts.txt.tmp"
    for ((i = 1; i <= N; i++)); do
        node=$(node_name "$i")
        # the key each host had when it was created; `rekey` changes the host, not this file
        echo "$node,$(node_addr "$i") $(cut -d' ' -f1,2 "$DIR/hosts/$node/known_key.pub")" >>"$tmp"
        echo "$node $(node_addr "$i")" >>"$DIR/hosts.txt.tmp"
    done
    mv "$tmp" "$DIR/known_hosts"
    mv "$DIR/hosts.txt.tmp" "$DIR/hosts.txt"
    {
        echo "# written by testbed.sh: ssh -F $DIR/ssh_config node-001 hostname"
        for ((i = 1; i <= N; i++)); do
            echo "Host $(node_name "$i")"
            echo "  HostName $(node_addr "$i")"
        done
        cat <<EOF
Host *
  User root
  IdentityFile $DIR/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $DIR/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  BatchMode yes
  KexAlgorithms curve25519-sha256
  ConnectTimeout 10
EOF
    } >"$DIR/ssh_config"
}

client_keys() {
    if [[ ! -f "$DIR/id_ed25519" ]]; then
        ssh-keygen -q -t ed25519 -N '' -C auto-testbed -f "$DIR/id_ed25519"
    fi
    if [[ ! -f "$DIR/id_ed25519_pass" ]]; then
        head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/passphrase"
        ssh-keygen -q -t ed25519 -N "$(cat "$DIR/passphrase")" -C auto-testbed-pass -f "$DIR/id_ed25519_pass"
    fi
    cat "$DIR/id_ed25519.pub" "$DIR/id_ed25519_pass.pub" >"$DIR/authorized_keys"
    if [[ ! -f "$DIR/password" ]]; then
        head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/password"
    fi
    chmod 600 "$DIR/id_ed25519" "$DIR/id_ed25519_pass" "$DIR/passphrase" "$DIR/password"
    if [[ ! -f "$DIR/shadow" ]]; then
        local hash
        hash=$(openssl passwd -6 -stdin <"$DIR/password")
        {
            echo "root:$hash:19000:0:99999:7:::"
            # every other account of this machine, locked
            cut -d: -f1 /etc/passwd | grep -vx root | sed 's/$/:*:19000:0:99999:7:::/'
        } >"$DIR/shadow"
        chmod 640 "$DIR/shadow"
    fi
}

ensure_bridge() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        echo "TB_BRIDGE_CREATED=1" >"$DIR/.bridge_created"
    fi
    ip addr replace "$NET.0.1/16" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

create_host() {
    local i=$1 node h ns veth addr
    node=$(node_name "$i")
    h="$DIR/hosts/$node"
    ns=$(netns_of "$i")
    veth=$(veth_of "$i")
    addr=$(node_addr "$i")
    mkdir -p "$h/root/.ssh"
    if [[ ! -f "$h/ssh_host_ed25519_key" ]]; then
        ssh-keygen -q -t ed25519 -N '' -C "$node" -f "$h/ssh_host_ed25519_key"
        cp "$h/ssh_host_ed25519_key.pub" "$h/known_key.pub"
    fi
    [[ -f "$h/known_key.pub" ]] || cp "$h/ssh_host_ed25519_key.pub" "$h/known_key.pub"
    echo "$node" >"$h/hostname"
    [[ -s "$h/machine-id" ]] || { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo; } >"$h/machine-id"
    [[ -f "$h/root/.bashrc" ]] || cp /etc/skel/.bashrc "$h/root/.bashrc" 2>/dev/null || : >"$h/root/.bashrc"
    [[ -f "$h/root/.profile" ]] || cp /etc/skel/.profile "$h/root/.profile" 2>/dev/null || : >"$h/root/.profile"
    chmod 700 "$h/root"
    [[ -f "$h/sshd_config" ]] || write_sshd_config "$i"
    write_start_script "$i"
    # network: a fresh namespace and veth (a stale one from a crash is replaced)
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$veth" 2>/dev/null || true
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" -batch - <<EOF
link set lo up
addr add $addr/16 dev eth0
link set eth0 up
EOF
    # a re-created host has a new MAC: forget the old neighbour entry
    ip neigh flush to "$addr" dev "$BRIDGE" 2>/dev/null || true
    echo "$ns" >"$h/netns"
}

host_running() {
    local i=$1 node
    node=$(node_name "$i")
    pid_alive "$(host_pid "$node")" "$DIR/hosts/$node" && [[ -e "/run/netns/$(netns_of "$i")" ]]
}

recorded_count() {
    local n=0 d
    for d in "$DIR"/hosts/node-*; do
        [[ -d "$d" ]] && n=$((n + 1))
    done
    echo "$n"
}

remove_host() {
    local i=$1 node h
    node=$(node_name "$i")
    h="$DIR/hosts/$node"
    stop_host "$i"
    if [[ -f "$h/netns" ]]; then
        ip netns del "$(cat "$h/netns")" 2>/dev/null || true
        rm -f "$h/netns"
    fi
    ip link del "$(veth_of "$i")" 2>/dev/null || true
}

cmd_up() {
    [[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 60000 ]] || die "up needs a host count, 1..60000"
    ensure_tools
    if [[ -f "$ENV_FILE" ]] && [[ "${TB_NET:-$NET}" != "$NET" || "${TB_NAME:-$NAME}" != "$NAME" ]]; then
        die "$DIR holds a testbed with --net ${TB_NET:-} --name ${TB_NAME:-}: run down first"
    fi
    # refuse a range that something else on this machine already routes
    if ip -4 route show | grep -v "dev $BRIDGE" | grep -qE "^$NET\.|^10\.0\.0\.0/8"; then
        die "$NET.0.0/16 is already routed on this machine; choose another --net"
    fi
    # namespaces of these names that this DIR did not record: another testbed's (refuse), or
    # left by a testbed whose directory is gone (a killed test run: clean up after it)
    local ns pid cmd owner
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NAME-node-[0-9]+$" || true); do
        grep -qxF "$ns" "$DIR/hosts/${ns#"$NAME"-}/netns" 2>/dev/null && continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
            [[ -n "$cmd" ]] || continue # gone meanwhile, or a zombie
            owner=$(grep -oE '/[^ ]*/hosts/node-[0-9]+/(start\.sh|sshd_config)' <<<"$cmd" | head -1) || true
            [[ -n "$owner" ]] || die "network namespace $ns holds a process testbed.sh did not start (pid $pid); choose another --name"
            if [[ -d "$(dirname "$owner")" ]]; then
                die "network namespace $ns belongs to the testbed in ${owner%/hosts/*}: choose another --name and --net, or take that one down"
            fi
            kill -KILL "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    local t0=$SECONDS i old
    old=$(recorded_count)
    printf 'TB_NET=%s\nTB_NAME=%s\nTB_BRIDGE=%s\nTB_N=%s\n' "$NET" "$NAME" "$BRIDGE" "$N" >"$ENV_FILE"
    client_keys
    ensure_bridge
    # create and start hosts 8 at a time: most of the cost is process start-up, not the kernel
    local started=() running=0
    for ((i = 1; i <= N; i++)); do
        if host_running "$i"; then continue; fi
        started+=("$i")
        (create_host "$i" && start_host "$i") &
        running=$((running + 1))
        if [[ $running -ge 8 ]]; then
            wait -n
            running=$((running - 1))
        fi
    done
    wait
    for ((i = N + 1; i <= old; i++)); do
        remove_host "$i"
        rm -rf "$DIR/hosts/$(node_name "$i")"
    done
    write_known_hosts
    wait_listening "${started[@]}"
    echo "testbed: $N hosts up in $DIR (${#started[@]} started, $((SECONDS - t0)) s); ssh -F $DIR/ssh_config node-001"
}

cmd_down() {
    [[ -f "$ENV_FILE" ]] || { echo "testbed: nothing recorded in $DIR"; return 0; }
    local d i n=0
    for d in "$DIR"/hosts/node-*; do
        [[ -d "$d" ]] || continue
        i=$(node_index "$(basename "$d")")
        remove_host "$i"
        n=$((n + 1))
    done
    if [[ -f "$DIR/.bridge_created" ]]; then
        ip link del "$BRIDGE" 2>/dev/null || true
        rm -f "$DIR/.bridge_created"
    fi
    rm -f "$ENV_FILE"
    echo "testbed: $n hosts down in $DIR"
}

cmd_status() {
    [[ -f "$ENV_FILE" ]] || { echo "testbed: nothing recorded in $DIR"; return 0; }
    local d i node up=0 total=0 down_list=()
    for d in "$DIR"/hosts/node-*; do
        [[ -d "$d" ]] || continue
        node=$(basename "$d")
        i=$(node_index "$node")
        total=$((total + 1))
        if host_running "$i"; then up=$((up + 1)); else down_list+=("$node"); fi
    done
    echo "testbed: $DIR net $NET.0.0/16 bridge $BRIDGE: $up of $total hosts running"
    [[ ${#down_list[@]} -eq 0 ]] || echo "not running: ${down_list[*]}"
}

need_node() {
    [[ -n "$NODE" ]] || die "$CMD needs a host name like node-003"
    [[ "$NODE" =~ ^node-[0-9]+$ ]] || die "not a host name: $NODE"
    [[ -d "$DIR/hosts/$NODE" ]] || die "$NODE is not part of the testbed in $DIR"
    [[ -f "$ENV_FILE" ]] || die "no testbed up in $DIR"
}

# sshd_pid I: the host's sshd (PID 1 of its PID namespace), child of the unshare we started.
sshd_pid() {
    local pid
    pid=$(host_pid "$(node_name "$1")")
    [[ -n "$pid" ]] && awk '{print $1}' "/proc/$pid/task/$pid/children" 2>/dev/null
}

restart_host() {
    local i=$1
    stop_host "$i"
    [[ -e "/run/netns/$(netns_of "$i")" ]] || create_host "$i"
    start_host "$i"
    wait_listening "$i"
}

cmd_node() {
    need_node
    local i h pid
    i=$(node_index "$NODE")
    h="$DIR/hosts/$NODE"
    case "$CMD" in
        stop) stop_host "$i" ;;
        start) host_running "$i" || restart_host "$i" ;;
        rekey)
            rm -f "$h/ssh_host_ed25519_key" "$h/ssh_host_ed25519_key.pub"
            ssh-keygen -q -t ed25519 -N '' -C "$NODE-rekeyed" -f "$h/ssh_host_ed25519_key"
            restart_host "$i" ;;
        hang)
            write_sshd_config "$i" "ForceCommand /bin/sleep 3600"
            restart_host "$i" ;;
        verbose)
            write_sshd_config "$i" "" VERBOSE
            restart_host "$i" ;;
        restore)
            write_sshd_config "$i"
            restart_host "$i" ;;
        freeze|thaw)
            pid=$(sshd_pid "$i")
            [[ -n "$pid" ]] || die "$NODE: sshd not running"
            if [[ "$CMD" == freeze ]]; then kill -STOP "$pid"; else kill -CONT "$pid"; fi ;;
    esac
    echo "testbed: $NODE $CMD done"
}

case "$CMD" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    stop|start|rekey|hang|verbose|restore|freeze|thaw) cmd_node ;;
    *) usage ;;
esac
