#!/usr/bin/env bash
# package-test.sh: the install test of the Debian packages, on this machine (root).
#
#   scripts/package-test.sh [--release]
#
# Builds both packages (scripts/package.sh; the debug build unless --release), checks the units
# with `systemd-analyze verify`, installs both with `dpkg -i`, starts the installed server (under
# systemd when systemd is PID 1; otherwise the binary directly, as the user auto-server with the
# installed config, on a free loopback port), creates a key with the installed
# `auto-server keys create`, runs the installed agent (`/usr/bin/auto-client run` with the
# installed config) against it, checks the host is on the server, then `dpkg --purge`s both and
# checks nothing is left (files, directories, the user and group).
#
# Safe to run again after a failed run: packages left installed by an earlier run are purged
# first, and everything is purged on exit. Prints one line per check and ends with
# `package-test: ok (N checks)` or `package-test: FAILED (N of M checks)`; exit 0 or 1 (2: cannot run).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=(--debug)
[[ "${1:-}" == --release ]] && profile=()
[[ $(id -u) -eq 0 ]] || { echo "package-test: needs root (dpkg -i)" >&2; exit 2; }
for tool in dpkg dpkg-deb systemd-analyze runuser; do
    command -v "$tool" >/dev/null || { echo "package-test: $tool is needed" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/auto-package-test.XXXXXX")
server_pid=""
checks=0
failed=0
ok() { checks=$((checks + 1)); echo "  ok    $*"; }
fail() { checks=$((checks + 1)); failed=$((failed + 1)); echo "  FAIL  $*"; }
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@" >"$work/check.out" 2>&1; then ok "$what"; else fail "$what"; sed 's/^/        /' "$work/check.out" | tail -n 20; fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed\|config-files'; }
purge_all() {
    if installed auto-client || installed auto-server; then
        dpkg --purge auto-client auto-server >"$work/purge.out" 2>&1 || { cat "$work/purge.out"; return 1; }
    fi
}
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
    if [[ -d /run/systemd/system ]]; then systemctl stop auto-server.service >/dev/null 2>&1 || true; fi
}
cleanup() {
    stop_server
    purge_all >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

if installed auto-client || installed auto-server; then
    echo "package-test: purging auto-client/auto-server left installed by an earlier run"
    purge_all
fi

echo "==> scripts/package.sh ${profile[*]}"
debs=$(scripts/package.sh "${profile[@]}" --out "$work/debs")
client_deb=$(grep '/auto-client_' <<<"$debs")
server_deb=$(grep '/auto-server_' <<<"$debs")

echo "==> dpkg -i"
check "dpkg -i auto-server auto-client" dpkg -i "$server_deb" "$client_deb"

echo "==> installed files"
check "binaries in /usr/bin" test -x /usr/bin/auto-client -a -x /usr/bin/auto-server
strict_modes() { # the host's StrictModes check: root-owned, not group/other writable
    local f bad=0
    for f in /usr/lib/auto-client /usr/lib/auto-client/*.so /etc/auto-client/plugins.d; do
        [[ $(stat -c '%u' "$f") == 0 && $(( 8#$(stat -c '%a' "$f") & 8#022 )) == 0 ]] || { echo "$f: $(stat -c '%U %a' "$f")"; bad=1; }
    done
    ls /usr/lib/auto-client/libcollector_os.so
    return $bad
}
check "collectors under /usr/lib/auto-client pass StrictModes" strict_modes
conffiles() {
    local c
    c=$(dpkg-query -W -f='${Conffiles}\n' auto-client auto-server)
    echo "$c"
    grep -q ' /etc/auto-client/auto-client.toml ' <<<"$c" && grep -q ' /etc/auto-client/plugins.toml ' <<<"$c" &&
        grep -q ' /etc/auto-server/auto-server.toml ' <<<"$c"
}
check "conffiles registered" conffiles
system_user() { getent passwd auto-server | grep ":/var/lib/auto-server:/usr/sbin/nologin$" && [ "$(id -u auto-server)" -lt 1000 ]; }
check "system user auto-server, no login shell" system_user
state_dir() { [ "$(stat -c "%U:%G %a" /var/lib/auto-server)" = "auto-server:auto-server 700" ]; }
check "/var/lib/auto-server is auto-server's, mode 0700" state_dir
check "/var/lib/auto-client exists" test -d /var/lib/auto-client

echo "==> systemd-analyze verify (unit files only: systemd is $( [[ -d /run/systemd/system ]] && echo || echo 'not ')PID 1)"
verify_units() {
    # any complaint counts, warnings too
    # (its exit status is 1 when this machine lacks the default dependencies' units, e.g.
    # sysinit.target in a container without systemd: those lines are about the machine, not the
    # units; every other line fails the check)
    systemd-analyze verify /lib/systemd/system/auto-server.service /lib/systemd/system/auto-client.service \
        /lib/systemd/system/auto-client.timer >"$work/verify.out" 2>&1 || true
    cat "$work/verify.out"
    if grep -v 'Unit sysinit.target not found' "$work/verify.out" | grep -q .; then return 1; fi
}
check "systemd-analyze verify auto-server.service auto-client.service auto-client.timer" verify_units
check "auto-server.service hardening" grep -qx 'ProtectSystem=strict' /lib/systemd/system/auto-server.service
timer() {
    local t=/lib/systemd/system/auto-client.timer
    grep -qx OnCalendar=daily $t && grep -q "^RandomizedDelaySec=" $t && grep -qx Persistent=true $t
}
check "auto-client.timer: daily, randomized, persistent" timer

echo "==> the installed server"
api=""
if [[ -d /run/systemd/system ]]; then
    systemctl start auto-server.service
    api=http://127.0.0.1:8080
    for _ in $(seq 100); do curl -fsS "$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
else
    echo "systemd is not PID 1 here: starting /usr/bin/auto-server directly as the user auto-server with /etc/auto-server/auto-server.toml (on a free port)"
    runuser -u auto-server -- /usr/bin/auto-server --config /etc/auto-server/auto-server.toml serve --listen 127.0.0.1:0 \
        >"$work/server.out" 2>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 200); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.1; done
    api=$(awk '/listening/{print $NF}' "$work/server.out")
fi
check "auto-server listening ($api)" test -n "$api"
server_state() {
    local f
    for f in /var/lib/auto-server/auto-server.db /var/lib/auto-server/auto-server.db.master-key; do
        [ "$(stat -c %U "$f")" = auto-server ] || return 1
    done
}
check "database and master key under /var/lib/auto-server, owned by auto-server" server_state

key_id=package-test
( umask 077; runuser -u auto-server -- /usr/bin/auto-server --config /etc/auto-server/auto-server.toml keys create "$key_id" >"$work/secret" )
install -m 0600 "$work/secret" /etc/auto-client/key
check "auto-server keys create $key_id (installed binary)" test -s /etc/auto-client/key

echo "==> the installed agent"
agent() {
    local rc=0
    # as the unit runs it: systemd creates CacheDirectory= and names it in $CACHE_DIRECTORY
    install -d -m 0755 /var/cache/auto-client
    CACHE_DIRECTORY=/var/cache/auto-client \
        /usr/bin/auto-client --config /etc/auto-client/auto-client.toml run --api "$api" --key-id "$key_id" || rc=$?
    # 1: some collector failed on this machine, the rest was reported
    [[ $rc == 0 || $rc == 1 ]] && [[ -s /var/lib/auto-client/cert ]]
}
check "/usr/bin/auto-client --config /etc/auto-client/auto-client.toml run" agent
abi_checked() {
    # the libraries' change time is dpkg's unpack: written down once 3 s old (abi_cache::SETTLE)
    sleep 3
    CACHE_DIRECTORY=/var/cache/auto-client /usr/bin/auto-client --config /etc/auto-client/auto-client.toml plugins \
        >/dev/null || :
    [[ -s /var/cache/auto-client/abi-checked ]]
}
check "the installed agent writes its layout checks to /var/cache/auto-client/abi-checked" abi_checked
host=$(cat /var/lib/auto-client/cert 2>/dev/null || true)
on_server() {
    /usr/bin/auto-client --config /etc/auto-client/auto-client.toml api "/api/v1/hosts/$host" --api "$api" --key-id "$key_id" \
        >"$work/host.json"
    grep -q "\"$host\"" "$work/host.json" && grep -q '"os"' "$work/host.json"
}
check "host ${host:-?} is on the server" on_server

echo "==> dpkg --purge"
stop_server
check "dpkg --purge auto-client auto-server" dpkg --purge auto-client auto-server
leftovers() {
    local p left=0
    for p in /usr/bin/auto-client /usr/bin/auto-server /usr/lib/auto-client /etc/auto-client /etc/auto-server \
        /var/lib/auto-client /var/cache/auto-client /var/lib/auto-server /lib/systemd/system/auto-client.service \
        /lib/systemd/system/auto-client.timer /lib/systemd/system/auto-server.service \
        /usr/share/doc/auto-client /usr/share/doc/auto-server; do
        if [[ -e $p || -L $p ]]; then echo "left behind: $p"; left=1; fi
    done
    if getent passwd auto-server >/dev/null; then echo "left behind: user auto-server"; left=1; fi
    if getent group auto-server >/dev/null; then echo "left behind: group auto-server"; left=1; fi
    if dpkg-query -W auto-client auto-server >/dev/null 2>&1; then echo "left behind: dpkg database entries"; left=1; fi
    return $left
}
check "nothing left behind (files, /var/lib dirs, user, group, dpkg entries)" leftovers

if [[ $failed == 0 ]]; then
    echo "package-test: ok ($checks checks)"
else
    echo "package-test: FAILED ($failed of $checks checks)"
    exit 1
fi
