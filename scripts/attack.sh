#!/usr/bin/env bash
# A load-and-fault run of the attacks of issue 9 against a live auto-server of its own.
#
#   scripts/attack.sh            build auto-server if no binary is there, run, print one summary
#                                line; exit 0 when nothing was lost and nothing was written by an
#                                unauthenticated request, 1 on any violation (each one printed)
#
# Env: AUTO_SERVER_BIN (default target/release/auto-server, else target/debug/auto-server),
#      ATTACK_KEEP=1 keeps the work directory (database, server log) for a look afterwards.
#
# The server runs on 127.0.0.1 (a free port) over a temp SQLite file, with a small clock skew
# (3 s), nonce pruning every second, a 2 s header timeout and a 3 s keep-alive. Two runs:
#   1. unauthenticated only: forged signatures under an existing key name (some declaring a
#      Content-Length over the limit), unknown keys, no or broken headers, 300 idle connections
#      and a slowloris; after a clean stop no table may have grown and the hosts are unchanged;
#   2. signed: a burst of valid reports (with a flood of forged requests alongside), replays of the
#      same nonce at once and until the request has left the window, a report with 20,000 parts of
#      one id, nonsense values, duplicate JSON keys, collected_at in year 1 and 9999, schema 1;
#      after a clean stop every acknowledged (2xx) report is in the database, no refused one is,
#      and the replayed registration did not revert the host's address.
# Every loop is bounded; the whole run takes about a minute.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SKEW=3

log() { echo "attack.sh: $*" >&2; }

BIN=${AUTO_SERVER_BIN:-}
if [ -z "$BIN" ]; then
    for profile in release debug; do
        if [ -x "$ROOT/target/$profile/auto-server" ]; then
            BIN="$ROOT/target/$profile/auto-server"
            break
        fi
    done
fi
if [ -z "$BIN" ]; then
    log "no auto-server binary: building it (cargo build -p auto-server)"
    (cd "$ROOT" && cargo build -q -p auto-server)
    BIN="$ROOT/target/debug/auto-server"
fi
[ -x "$BIN" ] || { log "error: $BIN is not executable"; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/auto-attack.XXXXXX")
DBFILE="$WORK/attack.db"
DB="sqlite://$DBFILE"
MASTER="$WORK/master.key"
SERVER_PID=""
BASE=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            log "the server did not stop on SIGTERM in 10 s: killing it"
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

cleanup() {
    stop_server
    if [ "${ATTACK_KEEP:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() {
    : >"$WORK/stdout"
    "$BIN" --db "$DB" --master-key "$MASTER" --log "info,sqlx=warn" serve \
        --listen 127.0.0.1:0 --clock-skew-secs "$SKEW" --nonce-prune-secs 1 \
        --header-timeout-secs 2 --keep-alive-secs 3 \
        >"$WORK/stdout" 2>>"$WORK/server.log" &
    SERVER_PID=$!
    local line
    for _ in $(seq 1 300); do
        line=$(head -n 1 "$WORK/stdout")
        case "$line" in
        "auto-server listening on "*)
            BASE=${line#auto-server listening on }
            return 0
            ;;
        esac
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "error: the server did not start (log follows)"
    cat "$WORK/server.log" >&2
    exit 2
}

cat >"$WORK/attack.py" <<'PY'
"""The attacks and the checks of scripts/attack.sh (python3 standard library only)."""
import hashlib
import hmac
import json
import os
import select
import socket
import sqlite3
import sys
import threading
import time
import uuid

VIOLATIONS = []
STATS = {}


def violation(msg):
    VIOLATIONS.append(msg)
    print("VIOLATION: " + msg, file=sys.stderr, flush=True)


def bump(name, n=1):
    STATS[name] = STATS.get(name, 0) + n


def now():
    return int(time.time())


# --- HTTP over raw sockets (full control over headers and Content-Length) ---

def complete(data):
    """Whether `data` holds a whole answer (the server may keep the connection open after it)."""
    if b"\r\n\r\n" not in data:
        return False
    top, rest = data.split(b"\r\n\r\n", 1)
    for line in top.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            return len(rest) >= int(v.strip())
        if k.strip().lower() == "transfer-encoding":
            return rest.endswith(b"0\r\n\r\n")
    return False


def http(base, method, path, body=b"", headers=None, declared_len=None, timeout=30.0):
    """(status, headers, body bytes); status 0 when the server closed or reset the connection."""
    host, port = base.split("://", 1)[1].rstrip("/").split(":")
    length = len(body) if declared_len is None else declared_len
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    head += "Content-Type: application/json\r\n"
    if method != "GET" or body:
        head += f"Content-Length: {length}\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    data = b""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(head.encode() + b"\r\n")
            try:
                s.sendall(body)
            except OSError:
                pass  # the server answered and closed before reading it all: read the answer
            while not complete(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        if not data:
            return 0, {}, b""
    if b"\r\n\r\n" not in data:
        return 0, {}, data
    top, rest = data.split(b"\r\n\r\n", 1)
    lines = top.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while rest:
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        rest = out
    return status, hdrs, rest


def sign_headers(key, secret, method, path, body, ts=None, nonce=None):
    ts = now() if ts is None else ts
    nonce = nonce or os.urandom(16).hex()
    canonical = "\n".join(
        [method.upper(), path, str(ts), nonce, hashlib.sha256(body).hexdigest()])
    sig = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return {"x-auto-key": key, "x-auto-timestamp": str(ts), "x-auto-nonce": nonce,
            "x-auto-signature": sig}


def forged_headers(key, ts=None):
    return {"x-auto-key": key, "x-auto-timestamp": str(now() if ts is None else ts),
            "x-auto-nonce": os.urandom(16).hex(), "x-auto-signature": os.urandom(32).hex()}


def healthz_ms(base):
    t = time.monotonic()
    status, _, _ = http(base, "GET", "/healthz", timeout=5)
    ms = (time.monotonic() - t) * 1000
    STATS["healthz_max_ms"] = max(STATS.get("healthz_max_ms", 0), int(ms))
    return status, ms


# --- reports built from the collectors' recorded outputs ---

CASES = [("os", "ubuntu-22.04-container"), ("cpu", "facter-amd64twentyfour"),
         ("memory", "dell-poweredge-ddr4"), ("disk", "intel-rste-server"),
         ("nic", "supermicro-bond"), ("board", "dell-poweredge-m630")]
GOLDEN = {}


def golden(root):
    for plugin, case in CASES:
        with open(os.path.join(root, "plugins", plugin, "fixtures", case, "output.json")) as f:
            GOLDEN[plugin] = json.load(f)


def report(hostname):
    plugins = {}
    for name, data in GOLDEN.items():
        data = json.loads(json.dumps(data))
        if name == "os":
            data["volatile"] = {"uptime_seconds": now() % 100000}
            data["identity"] = {"hostname": hostname, "machine_id": os.urandom(16).hex()}
        if name == "board":
            serial = "SN" + os.urandom(4).hex().upper()
            data["identity"] = {"serial": serial, "system_uuid": str(uuid.uuid4())}
            data["facts"]["serial"] = serial
            data["facts"]["uuid"] = data["identity"]["system_uuid"]
        plugins[name] = {"status": "ok", "version": "0.2.0", "duration_ms": 3, "data": data}
    return {"schema": 2, "report_id": str(uuid.uuid4()), "hostname": hostname,
            "previous_hostname": None,
            "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "agent": {"version": "0.2.0", "mode": "agent"}, "plugins": plugins}


# --- phase 1: nothing signed ---

def flood_forged(base, key, rounds, declared_len=2_000_000):
    """Forged signatures under an existing key name, declaring an over-limit body and sending
    only 2 bytes of it, all at once (the server drains a refused body for up to 10 s before its
    413, so each of these holds a connection that long)."""
    statuses, lock = {}, threading.Lock()

    def one(i):
        body = b"{}"
        st, _, _ = http(base, "POST", "/api/v1/reports", body, forged_headers(key),
                        declared_len=declared_len, timeout=60)
        with lock:
            statuses[st] = statuses.get(st, 0) + 1
            bump("unauthenticated")
        if 200 <= st < 300:
            violation(f"a forged request with an over-limit Content-Length got {st}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(rounds)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return statuses


def unauth(base, key, out):
    generic = None
    # 1. forged signature, existing key name, over-limit Content-Length (body not sent)
    t = time.monotonic()
    st = flood_forged(base, key, 200)
    STATS["forged_over_limit_s"] = round(time.monotonic() - t, 2)
    STATS["forged_over_limit_statuses"] = st
    # 2. the same with a 2 MB body really sent
    for _ in range(20):
        s, _, _ = http(base, "POST", "/api/v1/reports", b"x" * 2_000_000, forged_headers(key))
        bump("unauthenticated")
        if 200 <= s < 300:
            violation(f"a forged 2 MB request got {s}")
    # 3. forged signatures on valid bodies, every write endpoint, and on reads
    for i in range(100):
        for method, path, body in [
                ("POST", "/api/v1/reports", json.dumps(report("forged-ok-%d" % i)).encode()),
                ("POST", "/api/v1/hosts",
                 json.dumps({"hostname": "forged-%d" % i, "address": "10.9.9.9",
                             "port": 22}).encode()),
                ("GET", "/api/v1/hosts", b"")]:
            s, _, b = http(base, method, path, body, forged_headers(key))
            bump("unauthenticated")
            if s != 401:
                violation(f"forged {method} {path} under key {key!r} got {s} (401 expected)")
            elif generic is None:
                generic = b
    # 4. unknown keys: the same 401, byte for byte (no key name leaks)
    for i in range(100):
        s, _, b = http(base, "POST", "/api/v1/reports",
                       json.dumps(report("unknown-%d" % i)).encode(),
                       forged_headers("nobody-%d" % i))
        bump("unauthenticated")
        if s != 401:
            violation(f"an unknown key got {s} (401 expected)")
        elif b != generic:
            violation(f"an unknown key's 401 differs from a known key's: {b!r} vs {generic!r}")
    # 5. no headers, broken headers, timestamps out of the window
    bad = [{}, {"x-auto-key": key}, dict(forged_headers(key), **{"x-auto-timestamp": "abc"}),
           forged_headers(key, ts=now() - 3600), forged_headers(key, ts=now() + 3600),
           dict(forged_headers(key), **{"x-auto-signature": "zz"})]
    for h in bad:
        for _ in range(10):
            s, _, b = http(base, "POST", "/api/v1/reports",
                           json.dumps(report("broken")).encode(), h)
            bump("unauthenticated")
            if s != 401:
                violation(f"headers {sorted(h)} got {s} (401 expected)")
            elif b != generic:
                violation(f"a 401 differs from the generic one: {b!r}")
    # 6. 300 idle connections and a slowloris; /healthz must answer meanwhile
    host, port = base.split("://", 1)[1].split(":")
    idle = []
    for _ in range(300):
        try:
            idle.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError as e:
            violation(f"cannot open idle connection {len(idle) + 1}: {e}")
            break
    bump("unauthenticated", len(idle))
    slow = socket.create_connection((host, int(port)), timeout=5)
    slow.sendall(b"POST /api/v1/reports HTTP/1.1\r\nHost: x\r\n")
    bump("unauthenticated")
    started = time.monotonic()
    for _ in range(5):
        s, ms = healthz_ms(base)
        if s != 200 or ms > 1000:
            violation(f"/healthz with 300 idle connections: {s} in {ms:.0f} ms")
        time.sleep(0.2)
    slow_closed = None
    while time.monotonic() - started < 15 and slow_closed is None:
        try:
            slow.sendall(b"X-Slow: 1\r\n")
            r, _, _ = select.select([slow], [], [], 0.5)
            if r and not slow.recv(4096):
                slow_closed = time.monotonic() - started
        except OSError:
            slow_closed = time.monotonic() - started
    slow.close()
    if slow_closed is None:
        violation("a slowloris connection was still open after 15 s (header timeout 2 s)")
    else:
        STATS["slowloris_closed_s"] = round(slow_closed, 1)
    deadline = time.monotonic() + 10
    open_ = list(idle)
    while open_ and time.monotonic() < deadline:
        r, _, _ = select.select(open_, [], [], 0.5)
        for s in r:
            try:
                gone = not s.recv(4096)
            except OSError:
                gone = True
            if gone:
                open_.remove(s)
    STATS["idle_closed"] = f"{len(idle) - len(open_)}/{len(idle)}"
    if open_:
        violation(f"{len(open_)} of {len(idle)} idle connections still open after "
                  f"{time.monotonic() - started:.0f} s (keep-alive 3 s)")
    for s in idle:
        s.close()
    s, ms = healthz_ms(base)
    if s != 200:
        violation(f"/healthz after the idle connections: {s}")
    with open(out, "w") as f:
        json.dump({"violations": VIOLATIONS, "stats": STATS}, f)


# --- phase 2: signed ---

class Signed:
    def __init__(self, base, key, secret):
        self.base, self.key, self.secret = base, key, secret

    def send(self, method, path, body=b"", ts=None, nonce=None):
        h = sign_headers(self.key, self.secret, method, path, body, ts, nonce)
        s, hd, b = http(self.base, method, path, body, h)
        return s, hd, b, h

    def replay(self, method, path, body, headers):
        return http(self.base, method, path, body, headers)


def auth(base, key, secret, skew, out):
    api = Signed(base, key, secret)
    acked, refused_valid, lock = [], [], threading.Lock()
    stop = threading.Event()

    def reporter(worker):
        for i in range(40):
            r = report(f"load-{worker}-{i}")
            s, hd, b, _ = api.send("POST", "/api/v1/reports", json.dumps(r).encode())
            with lock:
                if 200 <= s < 300:
                    acked.append((r["report_id"], r["hostname"]))
                elif s == 503 and "retry-after" in hd:
                    refused_valid.append((r["report_id"], r["hostname"], s))
                else:
                    refused_valid.append((r["report_id"], r["hostname"], s))
                    violation(f"a valid report got {s}: {b[:200]!r}")

    def flooder():
        n = 0
        while not stop.is_set() and n < 2000:
            for h, body in [(forged_headers(key), b"x" * 1_100_000),
                            (forged_headers(key), b"{}"), (forged_headers("ghost"), b"{}")]:
                st, _, _ = http(base, "POST", "/api/v1/reports", body, h)
                if 200 <= st < 300:
                    violation(f"a forged request during the load got {st}")
            n += 3
        bump("unauthenticated", n)

    def prober():
        while not stop.is_set():
            s, ms = healthz_ms(base)
            if s != 200 or ms > 2000:
                violation(f"/healthz during the load: {s} in {ms:.0f} ms")
            time.sleep(0.2)

    side = [threading.Thread(target=flooder), threading.Thread(target=prober)]
    workers = [threading.Thread(target=reporter, args=(w,)) for w in range(4)]
    t = time.monotonic()
    for th in side + workers:
        th.start()
    for th in workers:
        th.join()
    STATS["load_s"] = round(time.monotonic() - t, 1)

    # Replays: a registration stamped at the edge of the window, then a newer one; the old one
    # replayed at once and until it has left the window (the nonce must outlive it).
    body1 = json.dumps({"hostname": "replay-target", "address": "10.0.0.1", "port": 22}).encode()
    ts = now() + skew - 1
    s, _, b, h1 = api.send("POST", "/api/v1/hosts", body1, ts=ts)
    if s not in (200, 201):
        violation(f"the registration to replay got {s}: {b!r}")
    body2 = json.dumps({"hostname": "replay-target", "address": "10.0.0.2", "port": 22}).encode()
    s, _, b, _ = api.send("POST", "/api/v1/hosts", body2)
    if s not in (200, 201):
        violation(f"the newer registration got {s}: {b!r}")
    r = report("replayed-report")
    rbody = json.dumps(r).encode()
    s, _, b, hr = api.send("POST", "/api/v1/reports", rbody)
    if 200 <= s < 300:
        acked.append((r["report_id"], r["hostname"]))
    else:
        violation(f"the report to replay got {s}: {b!r}")
    replays = 0
    while now() <= ts + skew + 2:
        for method, path, body, h in [("POST", "/api/v1/hosts", body1, h1),
                                      ("POST", "/api/v1/reports", rbody, hr)]:
            s, _, b = api.replay(method, path, body, h)
            replays += 1
            if s != 401:
                violation(f"a replay of {method} {path} {int(time.time()) - ts} s after its "
                          f"timestamp got {s} (401 expected): {b[:200]!r}")
        time.sleep(0.5)
    STATS["replays_refused"] = replays - sum("a replay of" in v for v in VIOLATIONS)

    # Huge part lists: 20,000 parts of one id (twice at once), 20,000 distinct, 10,000 of one id.
    def parts_report(n, same_id):
        r = report("parts-%d-%s" % (n, same_id))
        parts = [{"id": "sda" if same_id else "d%d" % i, "name": "sda" if same_id else "d%d" % i}
                 for i in range(n)]
        r["plugins"]["disk"]["data"]["lists"]["disks"]["parts"] = parts
        return r

    nonsense = []

    def big(n, same_id):
        r = parts_report(n, same_id)
        nonsense.append((r["report_id"], r["hostname"]))
        t = time.monotonic()
        s, _, b, _ = api.send("POST", "/api/v1/reports", json.dumps(r).encode())
        took = time.monotonic() - t
        STATS["parts_max_s"] = max(STATS.get("parts_max_s", 0), round(took, 2))
        if s not in (400, 413):
            violation(f"{n} parts (same id: {same_id}) got {s} (400 or 413 expected): {b[:200]!r}")
        if took > 10:
            violation(f"{n} parts took {took:.1f} s")

    bigs = [threading.Thread(target=big, args=a)
            for a in [(20000, True), (20000, True), (20000, False), (10000, True)]]
    for th in bigs:
        th.start()
    for th in bigs:
        th.join()
    stop.set()
    for th in side:
        th.join()

    # Nonsense values, one report each; every one must be a 400 and store nothing.
    def mutate(label, fn):
        r = report("nonsense-" + label)
        text = fn(r)
        nonsense.append((r["report_id"], r["hostname"]))
        if text is None:
            text = json.dumps(r)
        s, _, b, _ = api.send("POST", "/api/v1/reports", text.encode())
        bump("nonsense")
        if s != 400:
            violation(f"nonsense {label} got {s} (400 expected): {b[:200]!r}")

    def disk0(r):
        return r["plugins"]["disk"]["data"]["lists"]["disks"]["parts"][0]

    def nic0(r):
        return r["plugins"]["nic"]["data"]["lists"]["interfaces"]["parts"][0]

    def cpu(r):
        return r["plugins"]["cpu"]["data"]["facts"]

    mutate("negative-size", lambda r: disk0(r).update(size_bytes=-1))
    mutate("size-2-64", lambda r: disk0(r).update(size_bytes=2 ** 64))
    mutate("size-nan-string", lambda r: disk0(r).update(size_bytes="NaN"))
    mutate("size-nan-literal",
           lambda r: (disk0(r).update(size_bytes=float("nan")), json.dumps(r))[1])
    mutate("size-float-huge", lambda r: disk0(r).update(size_bytes=1e300))
    mutate("negative-speed", lambda r: nic0(r).update(speed_mbps=-100))
    mutate("cores-four", lambda r: cpu(r).update(core_count="four"))
    mutate("sockets-true", lambda r: cpu(r).update(socket_count=True))
    mutate("schema-string", lambda r: r.update(schema="2"))
    mutate("hostname-number", lambda r: r.update(hostname=5))
    mutate("collected-year-1", lambda r: r.update(collected_at="0001-01-01T00:00:00Z"))
    mutate("collected-year-9999", lambda r: r.update(collected_at="9999-12-31T23:59:59Z"))
    mutate("duplicate-hostname",
           lambda r: '{"hostname": "nonsense-duplicate-hostname-2", ' + json.dumps(r)[1:])
    mutate("duplicate-plugin",
           lambda r: json.dumps(r).replace(
               '"plugins": {', '"plugins": {"cpu": ' + json.dumps(r["plugins"]["cpu"]) + ", ", 1))
    mutate("unknown-member", lambda r: r.update(admin=True))

    def schema1(r):
        r["schema"] = 1
        r["plugins"] = {"cpu": {"status": "ok", "version": "0.1.0", "duration_ms": 1,
                                "data": {"model": "x", "cores": 4}}}
    mutate("schema-1", schema1)
    nonsense.append((None, "nonsense-duplicate-hostname-2"))

    with open(out, "w") as f:
        json.dump({"violations": VIOLATIONS, "stats": STATS, "acked": acked,
                   "not_acked": refused_valid, "nonsense": nonsense,
                   "replay": {"hostname": "replay-target", "address": "10.0.0.2"}}, f)


# --- the database, read after a clean stop ---

def snapshot(dbfile):
    con = sqlite3.connect(f"file:{dbfile}?mode=ro", uri=True)
    tables = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    snap = {}
    for t in tables:
        rows = sorted(repr(r) for r in con.execute(f'SELECT * FROM "{t}"'))
        snap[t] = {"count": len(rows), "digest": hashlib.sha256("\n".join(rows).encode()).hexdigest()}
    con.close()
    return snap


def compare(before, after):
    grown = 0
    for t, a in after.items():
        b = before.get(t, {"count": 0, "digest": ""})
        if a["count"] > b["count"]:
            grown += 1
            violation(f"table {t} grew from {b['count']} to {a['count']} rows "
                      "during the unauthenticated run")
        elif t != "nonces" and a["digest"] != b["digest"]:
            grown += 1
            violation(f"table {t} changed during the unauthenticated run")
    return grown


def check(dbfile, state):
    con = sqlite3.connect(f"file:{dbfile}?mode=ro", uri=True)
    stored = {r[0]: r[1] for r in con.execute("SELECT report_id, status FROM reports")}
    hosts = {r[0]: r[1] for r in con.execute("SELECT hostname, address FROM hosts")}
    found = 0
    for rid, host in state["acked"]:
        if rid not in stored or not 200 <= stored[rid] < 300:
            violation(f"report {rid} ({host}) was acknowledged but is not stored")
        elif host not in hosts:
            violation(f"host {host} was acknowledged but is not in the hosts table")
        else:
            found += 1
    for rid, host in state["nonsense"]:
        if rid is not None and rid in stored:
            violation(f"refused report {rid} ({host}) is in the reports table")
        if host in hosts:
            violation(f"host {host} of a refused report is in the hosts table")
    rp = state["replay"]
    if hosts.get(rp["hostname"]) != rp["address"]:
        violation(f"{rp['hostname']} has address {hosts.get(rp['hostname'])!r}, "
                  f"expected {rp['address']!r}: a replay went through")
    con.close()
    return found


def main():
    cmd = sys.argv[1]
    if cmd == "snapshot":
        with open(sys.argv[3], "w") as f:
            json.dump(snapshot(sys.argv[2]), f)
    elif cmd == "unauth":
        unauth(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "auth":
        golden(sys.argv[6])
        auth(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[7])
    elif cmd == "check":
        dbfile, base_snap, unauth_snap, p1, p2 = sys.argv[2:7]
        with open(base_snap) as f:
            before = json.load(f)
        with open(unauth_snap) as f:
            after = json.load(f)
        with open(p1) as f:
            r1 = json.load(f)
        with open(p2) as f:
            r2 = json.load(f)
        grown = compare(before, after)
        stored = check(dbfile, r2)
        all_v = r1["violations"] + r2["violations"] + VIOLATIONS
        s1, s2 = r1["stats"], r2["stats"]
        summary = (
            f"{s1.get('unauthenticated', 0) + s2.get('unauthenticated', 0)} unauthenticated "
            f"requests, tables grown by them: {grown}; "
            f"{len(r2['acked'])} reports acknowledged, {stored} stored"
            f" ({len(r2['not_acked'])} not acknowledged); "
            f"{s2.get('replays_refused', 0)} replays refused; "
            f"{s2.get('nonsense', 0)} nonsense reports + 4 huge part lists refused "
            f"(slowest {s2.get('parts_max_s', '?')} s); "
            f"idle closed {s1.get('idle_closed', '?')}, slowloris closed after "
            f"{s1.get('slowloris_closed_s', '?')} s; /healthz max "
            f"{max(s1.get('healthz_max_ms', 0), s2.get('healthz_max_ms', 0))} ms"
        )
        verdict = "FAIL" if all_v else "OK"
        print(f"attack.sh: {verdict}: {summary}" + (f"; {len(all_v)} violations" if all_v else ""))
        sys.exit(1 if all_v else 0)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
PY

run_py() { python3 "$WORK/attack.py" "$@"; }

log "server $BIN, work dir $WORK"
SECRET=$("$BIN" --db "$DB" --master-key "$MASTER" keys create attacker --scope fleet 2>>"$WORK/server.log")
run_py snapshot "$DBFILE" "$WORK/before.json"

log "run 1: unauthenticated requests only"
start_server
run_py unauth "$BASE" attacker "$WORK/run1.json" || true
stop_server
run_py snapshot "$DBFILE" "$WORK/after-unauth.json"

log "run 2: signed requests (load, replays, huge part lists, nonsense) with a forged flood"
start_server
run_py auth "$BASE" attacker "$SECRET" "$SKEW" "$ROOT" "$WORK/run2.json" || true
stop_server

for f in run1 run2; do
    [ -s "$WORK/$f.json" ] || { log "error: the $f phase did not finish (see above)"; exit 2; }
done
run_py check "$DBFILE" "$WORK/before.json" "$WORK/after-unauth.json" "$WORK/run1.json" "$WORK/run2.json"
