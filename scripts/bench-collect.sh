#!/usr/bin/env bash
# Benchmark: `auto-client collect` on this machine, the six original collectors (os, cpu, memory,
# disk, nic, board) against all twelve of plugins.toml, alternating in one run (issue 11: twelve
# within 1.5x of six; issue 14: six at most 10 ms), wall and CPU (the process and its children,
# from wait4), medians; then side by side with facter and `ansible localhost -m setup -c local`;
# plugin loading time and peak RSS. The load average is printed before and after.
# Usage: [BENCH_BASE=DIR] scripts/bench-collect.sh [RUNS] [--only-collect]
#   RUNS (default 30) rounds of six-then-twelve (the order swapped every other round);
#   --only-collect: stop after the six/twelve comparison (no facter, ansible, RSS);
#   BENCH_BASE: another checkout of auto-client whose release build (auto-client and the twelve
#   collectors, built there beforehand) runs in the same rounds, six and twelve, as the baseline.
# (root; installs hyperfine, facter, ansible, time)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
only_collect=${2:-}
missing=()
tools=(hyperfine facter ansible time)
[ "$only_collect" = --only-collect ] && tools=()
for p in "${tools[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# auto-client and the collectors of plugins.toml (not the whole workspace: the server is not timed)
# one "-p collector-NAME" pair per collector: the word splitting is wanted
# shellcheck disable=SC2046
cargo build --release --quiet -p auto-client $(sed -n 's/^\[plugins\.\(.*\)\]$/-p collector-\1/p' plugins.toml)
client=(target/release/auto-client --plugins plugins.toml)
"${client[@]}" collect >/dev/null   # warm caches; fails loudly if a plugin is broken

# The six original collectors, from plugins.toml itself (same paths and settings).
six=target/bench-six.toml
# six_toml PLUGINS_TOML: its tables of the six, with paths for a file in target/ next to it
six_toml() {
  awk '/^\[plugins\./ { started = 1; keep = ($0 ~ /^\[plugins\.(os|cpu|memory|disk|nic|board)\]/) }
       keep || !started { print }' "$1" |
    sed 's#^path = "target/#path = "../target/#; s#^dirs = .*#dirs = []#'
}
six_toml plugins.toml >"$six"
target/release/auto-client --plugins "$six" collect >/dev/null
base=${BENCH_BASE:-}
if [ -n "$base" ]; then
  base=$(cd "$base" && pwd)
  six_toml "$base/plugins.toml" >"$base/target/bench-six.toml"
  "$base/target/release/auto-client" --plugins "$base/target/bench-six.toml" collect >/dev/null
  "$base/target/release/auto-client" --plugins "$base/plugins.toml" collect >/dev/null
  echo "baseline: $base at $(git -C "$base" rev-parse --short HEAD)"
fi

echo "== six against twelve collectors, alternating, $runs rounds, at $(git rev-parse --short HEAD)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$runs" "$six" "$base" <<'PY'
import os, statistics, subprocess, sys, time
runs, six, base = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cmds = {"six": ["target/release/auto-client", "--plugins", six, "collect"],
        "twelve": ["target/release/auto-client", "--plugins", "plugins.toml", "collect"]}
if base:
    cmds["base six"] = [f"{base}/target/release/auto-client", "--plugins", f"{base}/target/bench-six.toml", "collect"]
    cmds["base twelve"] = [f"{base}/target/release/auto-client", "--plugins", f"{base}/plugins.toml", "collect"]
wall = {k: [] for k in cmds}
cpu = {k: [] for k in cmds}
for r in range(runs):
    for name in (list(cmds) if r % 2 == 0 else list(reversed(cmds))):
        t = time.perf_counter()
        p = subprocess.Popen(cmds[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall[name].append((time.perf_counter() - t) * 1000)
        cpu[name].append((ru.ru_utime + ru.ru_stime) * 1000)
        if status != 0:
            sys.exit(f"{name}: auto-client collect exited with status {status}")
print("\n| collectors | runs | median wall | min | max | median CPU (user+sys, with children) |")
print("|---|---|---|---|---|---|")
for k in cmds:
    print(f"| {k} | {runs} | {statistics.median(wall[k]):.1f} ms | {min(wall[k]):.1f} ms | "
          f"{max(wall[k]):.1f} ms | {statistics.median(cpu[k]):.1f} ms |")
def ratio(a, b):
    return (f"wall {statistics.median(wall[a]) / statistics.median(wall[b]):.2f}x, "
            f"CPU {statistics.median(cpu[a]) / statistics.median(cpu[b]):.2f}x (medians)")
print(f"\ntwelve / six: {ratio('twelve', 'six')}")
if base:
    print(f"base twelve / base six: {ratio('base twelve', 'base six')}")
    print(f"twelve / base six: {ratio('twelve', 'base six')}")
    print(f"six / base six: {ratio('six', 'base six')}; twelve / base twelve: {ratio('twelve', 'base twelve')}")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$only_collect" = --only-collect ] && exit 0
echo

echo "== wall time (hyperfine), in one run"
hyperfine -N --warmup 3 --style basic -r "$runs" --export-json target/bench-collect-1.json -n auto-client "${client[*]} collect" | grep -vE '^\s*$'
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
echo "== loading the twelve plugins (dlopen + ABI check + info), median of 20"
for _ in $(seq 20); do
  RUST_LOG=auto_client::local=debug "${client[@]}" collect 2>&1 >/dev/null | sed -n 's/.*took_us=\([0-9]*\).*/\1/p'
done | sort -n | awk '{a[NR]=$1} END {printf "plugin loading (the first collectors already running): median %.2f ms (min %.2f, max %.2f)\n", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000}'

echo
echo "== peak RSS (GNU time, max of 5)"
# (GNU time's last line is the peak RSS in KiB; a command that fails adds a line before it)
for _ in $(seq 5); do /usr/bin/time -f '%M' "${client[@]}" collect 2>&1 >/dev/null | tail -1; done |
  sort -n | tail -1 | awk '{printf "auto-client collect: peak RSS %.1f MB\n", $1/1024}'
{ /usr/bin/time -f '%M' facter --json 2>&1 >/dev/null || true; } | tail -1 | awk '{printf "facter: peak RSS %.1f MB\n", $1/1024}'
