#!/usr/bin/env bash
# The main job on the embedded default, from a fresh clone: builds everything (release), starts
# auto-server on a SQLite file, creates an agent key, runs `auto-client run` in agent mode against
# it, and shows what the CMDB now holds about this machine. Leaves the server running only with
# --keep. State goes to ./quickstart/ (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0; [ "${1:-}" = "--keep" ] && keep=1

if ! command -v cargo >/dev/null; then
  echo "quickstart: cargo is needed (https://rustup.rs)" >&2; exit 2
fi
echo "==> building (release)"
cargo build --release --workspace --quiet

state="$PWD/quickstart"
mkdir -p "$state"
db="sqlite://$state/cmdb.sqlite"
server=target/release/auto-server
client=target/release/auto-client

if [ ! -s "$state/agent.key" ]; then
  echo "==> creating the agent key 'quickstart'"
  ( umask 077; "$server" keys create quickstart --db "$db" > "$state/agent.key" )
fi

echo "==> starting auto-server on $db"
"$server" serve --db "$db" --listen 127.0.0.1:0 > "$state/server.out" 2> "$state/server.log" &
pid=$!
trap '[ $keep = 1 ] || kill $pid 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q listening "$state/server.out" 2>/dev/null && break; sleep 0.1; done
api=$(awk '/listening/{print $NF}' "$state/server.out")
[ -n "$api" ] || { echo "quickstart: auto-server did not start; see $state/server.log" >&2; exit 2; }

echo "==> auto-client run --mode agent --api $api"
"$client" --plugins plugins.toml run --mode agent --api "$api" \
  --key-id quickstart --key-file "$state/agent.key" \
  --cert-file "$state/cert" --spool-dir "$state/spool" --log-dir "$state/log"

login=$(id -un 2>/dev/null || echo admin)
if ! "$server" users list --db "$db" | cut -f1 | grep -qx "$login"; then
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | cut -c1-20)
  printf '%s\n' "$password" | "$server" users add "$login" --role admin --db "$db" 2>/dev/null
  echo "==> web login for you: user $login, password $password (shown once;"
  echo "    change it with: $server users passwd $login --db $db)"
fi

host=$(cat "$state/cert")
echo "==> the CMDB's record of $host (GET /api/v1/hosts/$host, signed)"
"$client" api "/api/v1/hosts/$host" --api "$api" --key-id quickstart --key-file "$state/agent.key"
echo
echo "server: $api (db $db); agent cert: $state/cert; logs: $state/log"
[ $keep = 1 ] && echo "auto-server keeps running (pid $pid)"
if [ $keep = 1 ]; then
  echo "this machine's page: $api/ui/hosts/$host"
else
  echo "this machine's page: $api/ui/hosts/$host (run scripts/quickstart.sh --keep to keep the server up and open it)"
fi
exit 0
