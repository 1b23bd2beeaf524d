#!/usr/bin/env python3
"""What a collection in ssh mode costs the host collected: the CPU of the script ssh mode sends,
run here as sshd runs a command (`bash -c SCRIPT`, stdin a pipe the client holds open), part by part.

    scripts/bench-target.py [ROUNDS]        (default 41; run from anywhere, as any user)

Each variant runs ROUNDS times, all variants alternating (the order reversed every other round);
the figure is the CPU of `bash` and everything it started (user + system, from wait4; this process
is a child subreaper, so what bash leaves behind is counted too), medians
with the quartiles, and each median above `bash -c true`'s: what `ssh host true` runs on the host.
The scripts are the host's own (`host/examples/batch_script.rs`: the commands the dry run learns
for the collectors of plugins.toml, as `remote::batch::script` writes them); the variants are
- the batch with no command: its frame (the move from bash to dash, the watchdog, the markers);
- the frame and the processes the six collectors start on every host: one `cat` for the direct
  reads of `/proc/cpuinfo` and `/proc/meminfo` (cpu, memory) and `ip -d -j addr` (nic);
- each collector of plugins.toml alone, then the six (os, cpu, memory, disk, nic, board) and all,
  and the six in bash (without the move to dash).
sshd's own CPU for a command's output (the channel, its encryption) is not in these figures:
`scripts/bench-ssh.sh` measures whole collections over SSH. This machine's figures hold for a host
like it: a host with more CPUs, disks or interfaces has more to read, one with DMI tables runs
`dmidecode` (the memory and board collectors), and where there is no dash the script runs in bash.
"""
import ctypes
import os
import re
import statistics
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIX = ["os", "cpu", "memory", "disk", "nic", "board"]
DIRECT = ["--command", "cat -- /proc/cpuinfo", "--command", "cat -- /proc/meminfo"]
IP = ["--command", "ip -d -j addr"]


def sh(*args):
    return subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def collectors():
    with open(os.path.join(ROOT, "plugins.toml"), "rb") as f:
        return list(tomllib.load(f).get("plugins", {}))


# The batch's marker lines on stdout (the example's fixed nonce): a command's end with its exit
# code, and the end of the batch.
END = re.compile(rb"^@@auto-client-batch-0123456789abcdef-end (\d+) (\d+) (\d+)$", re.M)
DONE = b"@@auto-client-batch-0123456789abcdef-done\n"


def script(*args):
    return sh("target/release/examples/batch_script", *args)


def run(text, capture=False):
    """CPU (ms) of `bash -c text` and every process under it; with capture, also its stdout.

    This process is a child subreaper, so a process the script leaves behind (the batch's
    watchdog, which it kills without waiting for it) is reparented here and counted too."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    p = subprocess.Popen(["bash", "-c", text], stdin=subprocess.PIPE, stdout=out,
                         stderr=subprocess.DEVNULL)
    stdout = p.stdout.read() if capture else b""
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    while True:
        try:
            _, _, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        cpu += usage.ru_utime + usage.ru_stime
    p.stdin.close()
    if capture:
        p.stdout.close()
    return cpu * 1000, status, stdout


def check(name, text):
    """Refuses a variant whose script did not run to its end here, or whose command was not found."""
    _, status, stdout = run(text, capture=True)
    if status != 0:
        sys.exit(f"bench-target: {name!r} exited with wait status {status}")
    if text == "true":
        return
    ends = END.findall(stdout)
    # the commands' end lines, and the direct reads' (from the here-documents of their `cat`)
    expected = len(re.findall(r"__e \d+;", text)) + len(re.findall(r"-end \d+ \$__r\d+ 0\n", text))
    if not stdout.endswith(DONE) or expected != len(ends):
        sys.exit(f"bench-target: {name!r} did not run to its end ({len(ends)} commands ended)")
    for index, code, killed in ends:
        if code in (b"126", b"127") or killed != b"0":
            sys.exit(f"bench-target: {name!r}: command {index.decode()} exited {code.decode()} "
                     f"(126/127: not found or not runnable here)")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 41
    if rounds < 2:
        sys.exit("bench-target: ROUNDS must be 2 or more (medians and quartiles)")
    # PR_SET_CHILD_SUBREAPER (36): orphans of the scripts come back to this process
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
        sys.exit(f"bench-target: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    names = collectors()
    print("building auto-client's batch_script example and the collectors of plugins.toml ...",
          flush=True)
    sh("cargo", "build", "--release", "--quiet", "-p", "auto-client", "--example", "batch_script",
       *[a for n in names for a in ("-p", f"collector-{n}")])
    variants = {"bash -c true (ssh host true)": "true",
                "batch frame, no command": script("-"),
                "frame + cat of 2 /proc files": script("-", *DIRECT),
                "frame + ip -d -j addr": script("-", *IP),
                "frame + cat + ip": script("-", *DIRECT, *IP)}
    for n in names:
        variants[f"collector {n} alone"] = script("plugins.toml", "--only", n)
    variants["the six"] = script("plugins.toml", "--only", ",".join(SIX))
    variants[f"all {len(names)}"] = script("plugins.toml")
    variants["the six, in bash (no dash)"] = script("plugins.toml", "--only", ",".join(SIX),
                                                   "--in-shell")
    # Every script must run to its end here: each command's end line, the done line, exit 0.
    for name, text in variants.items():
        check(name, text)
    cpu = {name: [] for name in variants}
    print(f"{len(variants)} variants, {rounds} rounds, alternating; "
          f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}", flush=True)
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            ms, status, _ = run(variants[name])
            if status != 0:
                sys.exit(f"bench-target: {name!r} exited with wait status {status}")
            cpu[name].append(ms)
    floor = statistics.median(cpu["bash -c true (ssh host true)"])
    print(f"\nCPU of `bash -c SCRIPT` and its children, {os.cpu_count()} CPUs, "
          f"kernel {os.uname().release}, at {sh('git', 'rev-parse', '--short', 'HEAD').strip()}\n")
    print("| variant | median CPU | quartiles | above `bash -c true` |")
    print("|---|---|---|---|")
    for name, values in cpu.items():
        q1, _, q3 = statistics.quantiles(values, n=4)
        m = statistics.median(values)
        print(f"| {name} | {m:.2f} ms | {q1:.2f}-{q3:.2f} | {m - floor:+.2f} ms |")
    print(f"\nload average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    frame = statistics.median(cpu["frame + cat + ip"]) - floor
    print(f"issue 14's target goal: at most +5 ms above `ssh true`; the frame and the processes the "
          f"six start on every host (one cat, ip) alone: {frame:+.2f} ms here")


if __name__ == "__main__":
    main()
