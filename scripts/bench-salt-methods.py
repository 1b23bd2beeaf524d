#!/usr/bin/env python3
"""Compare ways of running the six collector commands through Salt (salt-exec/DESIGN.md).

usage: SALT_VENV/bin/python scripts/bench-salt-methods.py CONFIG_DIR N_MINIONS [methods...]
Methods: a (one `salt` CLI call per command), b (one CLI call per minion running all six),
b1 (one CLI call for all minions running all six), cb1 (LocalClient: one job for all minions running all six), c (Python LocalClient in one process: one job per
command and minion, all in flight), c1 (LocalClient: one job per command targeting all minions),
grains (salt -L ... grains.items, the baseline). Prints minions/s for each.
"""
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

CMDS = ["hostname && cat /etc/os-release", "cat /proc/cpuinfo", "cat /proc/meminfo",
        "lsblk -J -b -d", "ip -j addr", "cat /etc/machine-id"]
conf, n = sys.argv[1], int(sys.argv[2])
methods = sys.argv[3:] or ["a", "b", "b1", "c", "c1", "cb1", "grains"]
minions = ["minion-%02d" % i for i in range(1, n + 1)]
salt = os.path.join(os.path.dirname(sys.executable), "salt")
SEP = "@@SALT-EXEC-SEP@@"
BATCH = "; ".join("echo %s%d; ( %s ) 2>&1; echo %s-rc=$?" % (SEP, i, c, SEP) for i, c in enumerate(CMDS))

def cli(tgt, fun, *args, tgt_list=False):
    cmd = [salt, "-c", conf] + (["-L"] if tgt_list else []) + [tgt, fun, *args, "--out=json", "--static", "-t", "30"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return json.loads(p.stdout or "{}")

def m_a():
    # sequential like a single worker; then 4 workers in parallel
    def one(job):
        m, c = job
        r = cli(m, "cmd.run_all", c, "python_shell=True")
        assert r[m]["retcode"] == 0, r
    jobs = [(m, c) for m in minions for c in CMDS]
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(one, jobs))

def m_b():
    def one(m):
        r = cli(m, "cmd.run_all", BATCH, "python_shell=True")
        assert r[m]["stdout"].count(SEP + "-rc=0") == 6, r
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(one, minions))

def m_b1():
    r = cli(",".join(minions), "cmd.run_all", BATCH, "python_shell=True", tgt_list=True)
    assert all(r[m]["stdout"].count(SEP + "-rc=0") == 6 for m in minions), r

def local_jobs(targets_per_job, cmd_of=lambda c: c):
    import salt.client, salt.config
    opts = salt.config.client_config(os.path.join(conf, "master"))
    lc = salt.client.LocalClient(mopts=opts)
    ev = lc.event
    ev.connect_pub(timeout=10)
    t0 = time.monotonic()
    want = {}
    for tgts, c in targets_per_job:
        pub = lc.run_job(tgts, "cmd.run_all", arg=[cmd_of(c)], tgt_type="list",
                         kwarg={"python_shell": True}, listen=False)
        for m in pub["minions"]:
            want[(pub["jid"], m)] = 1
    while want:
        e = ev.get_event(wait=5, tag="salt/job/", full=True)
        if not e:
            raise SystemExit("timeout, %d missing" % len(want))
        p = e["tag"].split("/")
        if len(p) >= 5 and p[3] == "ret":
            want.pop((p[2], p[4]), None)
    return time.monotonic() - t0

def m_c():
    return local_jobs([([m], c) for m in minions for c in CMDS])

def m_c1():
    return local_jobs([(minions, c) for c in CMDS])

def m_cb1():
    return local_jobs([(minions, BATCH)])

def m_grains():
    r = cli(",".join(minions), "grains.items", tgt_list=True)
    assert len(r) == n, r.keys()

for name in methods:
    f = globals()["m_" + name]
    t0 = time.monotonic()
    inner = f()
    dt = time.monotonic() - t0
    extra = " (in-process, excl. python/salt import: %.2fs)" % inner if inner else ""
    print("%-7s %2d minions: %6.2fs  %6.2f minions/s%s" % (name, n, dt, n / dt, extra), flush=True)
