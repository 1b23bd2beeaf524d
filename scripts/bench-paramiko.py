#!/usr/bin/env python3
"""The classic Python design, for comparison: paramiko, one SSHClient per host on a thread pool,
six commands a host, TCP_NODELAY, strict host keys from the testbed's known_hosts.

usage: bench-paramiko.py DIR WORKERS
"""
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import paramiko

COMMANDS = ["hostname", "cat /etc/os-release", "cat /proc/cpuinfo", "cat /proc/meminfo",
            "lsblk -J", "ip -j addr"]


def collect(d, name, addr):
    sock = socket.create_connection((addr, 22), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(f"{d}/known_hosts")  # the classic design: parsed per connection
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(addr, username="root", key_filename=f"{d}/id_ed25519", sock=sock,
                   allow_agent=False, look_for_keys=False, timeout=10)
    n = 0
    for c in COMMANDS:
        _, out, _ = client.exec_command(c, timeout=10)
        n += len(out.read())
        out.channel.recv_exit_status()
    client.close()
    return n


def main():
    d, workers = sys.argv[1], int(sys.argv[2])
    hosts = [l.split() for l in open(f"{d}/hosts.txt") if l.strip()]
    t0 = time.monotonic()
    failed = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(collect, d, n, a) for n, a in hosts]
        for f in futures:
            try:
                f.result()
            except Exception as e:  # report and go on, like the other clients
                failed += 1
                print(f"paramiko: {e}", file=sys.stderr)
    print(f"paramiko: {len(hosts)} hosts, {failed} failed, wall {time.monotonic() - t0:.2f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
