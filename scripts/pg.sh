#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for auto-server's tests and benchmark.
#
#   scripts/pg.sh        install PostgreSQL if its binaries are missing, create the cluster (once),
#                        start it on 127.0.0.1:55432 and print its URL on stdout; idempotent
#   scripts/pg.sh stop   stop that cluster (and nothing else)
#
# Env: AUTO_PG_DIR (state dir, default /tmp/auto-client-pg), AUTO_PG_PORT (default 55432).
# Use:  export AUTO_TEST_PG_URL=$(scripts/pg.sh)
set -euo pipefail

DIR=${AUTO_PG_DIR:-/tmp/auto-client-pg}
PORT=${AUTO_PG_PORT:-55432}
ROLE=auto
PASSWORD=auto
URL="postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/postgres"

log() { echo "pg.sh: $*" >&2; }

find_bin() {
    find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

BIN=$(find_bin)
if [ "${1:-start}" = stop ]; then
    if [ -n "$BIN" ] && [ -f "$DIR/data/postmaster.pid" ]; then
        as_postgres "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2
        log "stopped the cluster in $DIR"
    else
        log "no cluster running in $DIR"
    fi
    exit 0
fi

if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    log "postgresql binaries missing: installing"
    if [ "$(id -u)" != 0 ]; then
        log "error: installing postgresql needs root"
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y postgresql >&2 || { apt-get update >&2 && apt-get install -y postgresql >&2; }
    BIN=$(find_bin)
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$DIR"
    chown postgres: "$DIR"
    chmod 0700 "$DIR"
fi

if [ ! -f "$DIR/data/PG_VERSION" ]; then
    log "creating a cluster in $DIR/data"
    pwfile=$(mktemp)
    echo "$PASSWORD" > "$pwfile"
    chmod 0644 "$pwfile"
    as_postgres "$BIN/initdb" -D "$DIR/data" -U "$ROLE" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2
    rm -f "$pwfile"
    cat >> "$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 300
shared_buffers = 256MB
fsync = on
synchronous_commit = off
CONF
fi

if ! as_postgres "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    as_postgres "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >&2
    log "started on 127.0.0.1:$PORT (log: $DIR/server.log)"
fi

for _ in $(seq 1 60); do
    if "$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q; then
        echo "$URL"
        exit 0
    fi
    sleep 0.5
done
log "error: the cluster in $DIR did not become ready; see $DIR/server.log"
exit 1
