#!/usr/bin/env bash
# Checks auto-server's OpenAPI document against the live server with schemathesis (PyPI):
# no 5xx, and every status, content type and body conforms to the document.
#
#   scripts/schemathesis.sh            # env: ST_MAX_EXAMPLES (default 50), ST_MAX_TIME (seconds per run, default 120)
#
# Uses $AUTO_SERVER_BIN when set (test.sh passes the binary its workspace build made); otherwise
# builds auto-server (debug, CARGO_TARGET_DIR=target-server, so a single-package build does not
# change the features of the shared target's dependencies). Starts it with --no-auth on a temp
# SQLite file, installs schemathesis in target/venv-schemathesis (once), runs it, stops the server.
# Exits non-zero when schemathesis finds a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-server}
VENV=target/venv-schemathesis
ST=$VENV/bin/schemathesis

if [ ! -x "$ST" ]; then
    echo "schemathesis.sh: installing schemathesis in $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q schemathesis
fi

if [ -n "${AUTO_SERVER_BIN:-}" ]; then
    BIN=$AUTO_SERVER_BIN
else
    cargo build -q -p auto-server
    BIN=$CARGO_TARGET_DIR/debug/auto-server
fi

WORK=$(mktemp -d)
SERVER_PID=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" --db "sqlite://$WORK/st.db" --log warn serve --listen 127.0.0.1:0 --no-auth \
    > "$WORK/stdout" 2> "$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$WORK/stdout" 2>/dev/null && break
    sleep 0.1
done
BASE=$(sed -n 's/^auto-server listening on //p' "$WORK/stdout")
if [ -z "$BASE" ]; then
    echo "schemathesis.sh: the server did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 2
fi
echo "schemathesis.sh: server at $BASE" >&2

# Seed a host so the read endpoints have data to conform with.
curl -fsS -X POST "$BASE/api/v1/hosts" -H 'content-type: application/json' \
    -d '{"hostname":"seed-1","address":"127.0.0.1","port":22}' > /dev/null

status=0
# Positive data: every documented check. The literal path /api/v1/hosts/pending is its own
# operation, which negative data for {hostname} can hit, so conformance runs on positive data;
# negative data (schema-violating inputs) must still never cause a 5xx.
"$ST" run "$BASE/api/v1/openapi.json" \
    --mode positive \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${ST_MAX_EXAMPLES:-50}" --max-time "${ST_MAX_TIME:-120}" \
    --seed 1 --no-color --warnings off || status=$?
"$ST" run "$BASE/api/v1/openapi.json" \
    --mode negative \
    --checks not_a_server_error,content_type_conformance \
    --max-examples "${ST_MAX_EXAMPLES:-50}" --max-time "${ST_MAX_TIME:-120}" \
    --seed 1 --no-color --warnings off || status=$?

if grep -q " ERROR " "$WORK/server.log"; then
    echo "schemathesis.sh: the server logged errors:" >&2
    grep " ERROR " "$WORK/server.log" | head -20 >&2
    status=1
fi
exit "$status"
