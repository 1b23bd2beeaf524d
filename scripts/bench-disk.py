#!/usr/bin/env python3
"""Benchmark: what the disk collector's command costs a host, against the lsblk it replaced.

Runs, alternating, `dash -c` (the shell the ssh batch runs commands in where there is one) with
`true` (the floor), the collector's SYSFS script (read out of plugins/disk/src/lib.rs) and its
LSBLK command; prints per command the median CPU (user+sys of dash and its children, from wait4)
and wall time over ROUNDS rounds (default 61), and the load average before and after.
Usage: scripts/bench-disk.py [ROUNDS]
"""
import os
import statistics
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
src = open(os.path.join(ROOT, "plugins/disk/src/lib.rs")).read()
start = src.index('pub const SYSFS: &str = r#"') + len('pub const SYSFS: &str = r#"')
SYSFS = src[start:src.index('"#;', start)]
start = src.index('pub const LSBLK: &str = "') + len('pub const LSBLK: &str = "')
LSBLK = src[start:src.index('";', start)]
COMMANDS = {"dash -c true": "true", "disk: SYSFS script": SYSFS, "disk: lsblk -J (before)": LSBLK}
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 61

print("load average before:", open("/proc/loadavg").read().split()[:3])
cpu = {k: [] for k in COMMANDS}
wall = {k: [] for k in COMMANDS}
devnull = os.open(os.devnull, os.O_WRONLY)
for r in range(rounds):
    order = list(COMMANDS.items())
    if r % 2:
        order.reverse()
    for name, command in order:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.dup2(devnull, 1)
            os.execv("/bin/dash", ["dash", "-c", command])
        _, status, usage = os.wait4(pid, 0)
        wall[name].append((time.perf_counter() - t0) * 1000)
        assert os.waitstatus_to_exitcode(status) == 0, name
        cpu[name].append((usage.ru_utime + usage.ru_stime) * 1000)
print(f"{rounds} alternating rounds, medians")
print("| command | CPU ms | wall ms |")
print("| --- | ---: | ---: |")
for name in COMMANDS:
    print(f"| {name} | {statistics.median(cpu[name]):.2f} | {statistics.median(wall[name]):.2f} |")
print("load average after:", open("/proc/loadavg").read().split()[:3])
