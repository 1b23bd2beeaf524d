#!/usr/bin/env bash
# Benchmark: `auto-client collect` (six collectors, this machine) side by side with facter and
# `ansible localhost -m setup -c local`, in one run; plus plugin loading time and peak RSS.
# Usage: scripts/bench-collect.sh [RUNS]   (root; installs hyperfine, facter, ansible, time)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
missing=()
for p in hyperfine facter ansible time; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --workspace --quiet
client="target/release/auto-client --plugins plugins.toml"
$client collect >/dev/null   # warm caches; fails loudly if a plugin is broken

echo "== wall time (hyperfine), in one run"
hyperfine -N --warmup 3 --style basic -r "$runs" --export-json target/bench-collect-1.json -n auto-client "$client collect" | grep -vE '^\s*$'
hyperfine -N --warmup 1 --style basic -r 10 --export-json target/bench-collect-2.json -i -n facter "facter --json" | grep -vE '^\s*$'
hyperfine -N --warmup 1 --style basic -r 5 --export-json target/bench-collect-3.json -i -n ansible "ansible localhost -m setup -c local" | grep -vE '^\s*$'
python3 - <<'PY'
import json
print("\n| command | runs | median | mean | min | max |\n|---|---|---|---|---|---|")
for i in (1, 2, 3):
    for x in json.load(open(f"target/bench-collect-{i}.json"))["results"]:
        print(f"| {x['command']} | {len(x['times'])} | {x['median']*1000:.1f} ms | {x['mean']*1000:.1f} ms | {x['min']*1000:.1f} ms | {x['max']*1000:.1f} ms |")
PY
echo
echo "== loading the six plugins (dlopen + ABI check + info), median of 20"
for _ in $(seq 20); do
  RUST_LOG=auto_client::app=debug $client collect 2>&1 >/dev/null | sed -n 's/.*took_us=\([0-9]*\).*/\1/p'
done | sort -n | awk '{a[NR]=$1} END {printf "plugin loading: median %.2f ms (min %.2f, max %.2f)\n", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000}'

echo
echo "== peak RSS (GNU time, max of 5)"
for _ in $(seq 5); do /usr/bin/time -f '%M' "$client" collect 2>&1 >/dev/null | tail -1; done |
  sort -n | tail -1 | awk '{printf "auto-client collect: peak RSS %.1f MB\n", $1/1024}'
/usr/bin/time -f '%M' facter --json 2>&1 >/dev/null | tail -1 | awk '{printf "facter: peak RSS %.1f MB\n", $1/1024}'
