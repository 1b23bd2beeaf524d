"""salt-exec's helper: one long-lived process on the Salt master that runs Salt jobs for the Rust side.

Protocol: JSON lines. Requests on stdin, responses on the file descriptor that was stdout at start
(Salt's client prints to stdout in places, so sys.stdout is pointed at stderr).

  -> {"id": 7, "op": "run", "tgt": ["minion-01", ...], "fun": "cmd.run_all", "arg": [...],
      "kwarg": {...}, "timeout": 12.0, "probe_timeout": 3.0}
  <- {"id": 7, "minion": "minion-01", "status": "ok", "ret": ..., "retcode": 0, "success": true}
  <- {"id": 7, "minion": "minion-02", "status": "no_return"}     alive (answered the probe), no return in time
  <- {"id": 7, "minion": "minion-03", "status": "unreachable"}   did not answer the probe either
  <- {"id": 7, "minion": "minion-04", "status": "unknown_minion"} not an accepted key on this master
  <- {"id": 7, "status": "error", "message": "..."}               the job could not be published
  <- {"id": 7, "done": true}                                      always last for a request

  -> {"id": 8, "op": "minions"}  <- {"id": 8, "minions": [...accepted ids...]} then done

One thread reads stdin, one reads the master's event bus (every salt/job/ event); both feed one
queue. The main thread publishes jobs (LocalClient.run_job, non-blocking), matches returns to
requests and watches deadlines, so any number of requests are in flight at once.
A minion silent past a request's timeout gets a saltutil.find_job probe: an answer means it is alive
but late (timeout), no answer within probe_timeout means it is unreachable.
"""

import json
import os
import queue
import sys
import threading
import time
import traceback

PROTO = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
sys.stdout = sys.stderr


def encode(obj):
    if isinstance(obj, (bytes, bytearray)):
        return {"__bytes_hex__": bytes(obj).hex()}
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return repr(obj)


def send(msg):
    PROTO.write(json.dumps(msg, default=encode) + "\n")
    PROTO.flush()


class Job:
    def __init__(self, req, jid, minions):
        self.id = req["id"]
        self.jid = jid
        self.waiting = set(minions)
        self.deadline = time.monotonic() + float(req.get("timeout", 30))
        self.probe_timeout = float(req.get("probe_timeout", 3))
        self.probe_jid = None
        self.probe_deadline = None


def reader(q):
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            q.put(json.loads(line))
        except ValueError as exc:
            sys.stderr.write("salt helper: bad request line: %s\n" % exc)
    q.put(None)


def event_reader(opts, q, connected):
    """Every job event of the master, into q. Blocks on the bus without a timeout: in Salt 3007 a
    receive that times out drops and re-opens the subscription, losing what arrives meanwhile
    (a poll with a short timeout lost about one return in five with 20 minions)."""
    import salt.utils.event

    event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    if not event.connect_pub(timeout=10):
        connected.append(False)
        return
    connected.append(True)
    while True:
        ev = event.get_event(wait=0, tag="salt/job/", full=True)  # wait=0: no timeout
        if ev:
            q.put(("event", ev.get("tag", ""), ev.get("data") or {}))


def main():
    config_dir = sys.argv[1]
    import salt.client
    import salt.config
    import salt.key

    opts = salt.config.client_config(os.path.join(config_dir, "master"))
    client = salt.client.LocalClient(mopts=opts)

    q = queue.Queue()
    connected = []
    threading.Thread(target=event_reader, args=(opts, q, connected), daemon=True).start()
    deadline = time.monotonic() + 15
    while not connected and time.monotonic() < deadline:
        time.sleep(0.01)
    if connected != [True]:
        send({"id": 0, "status": "error", "message": "cannot connect to the master event bus in %s" % opts["sock_dir"]})
        return 1
    send({"id": 0, "ready": True})
    threading.Thread(target=reader, args=(q,), daemon=True).start()

    jobs = {}    # jid -> Job
    probes = {}  # probe jid -> job jid
    eof = False

    def finish(job):
        send({"id": job.id, "done": True, "jid": job.jid})
        jobs.pop(job.jid, None)
        if job.probe_jid:
            probes.pop(job.probe_jid, None)

    def start(req):
        op = req.get("op")
        if op == "minions":
            keys = salt.key.get_key(opts).list_keys()
            send({"id": req["id"], "minions": sorted(keys.get("minions", []))})
            send({"id": req["id"], "done": True})
            return
        if op != "run":
            send({"id": req["id"], "status": "error", "message": "unknown op %r" % op})
            send({"id": req["id"], "done": True})
            return
        tgt = list(req["tgt"])
        try:
            pub = client.run_job(
                tgt,
                req["fun"],
                arg=req.get("arg", []),
                tgt_type="list",
                kwarg=req.get("kwarg") or None,
                timeout=float(req.get("publish_timeout", 15)),
                listen=False,
            )
        except Exception as exc:  # the master is down, auth failed, ...
            send({"id": req["id"], "status": "error", "message": ("%s" % exc).strip() or type(exc).__name__})
            send({"id": req["id"], "done": True})
            return
        expected = pub.get("minions", []) if pub else []
        for m in tgt:
            if m not in expected:
                send({"id": req["id"], "minion": m, "status": "unknown_minion"})
        if not pub or not expected:
            send({"id": req["id"], "done": True})
            return
        job = Job(req, str(pub["jid"]), [m for m in tgt if m in expected])
        jobs[job.jid] = job

    def on_event(tag, data):
        parts = tag.split("/")
        if len(parts) < 5 or parts[3] != "ret":
            return
        jid, minion = parts[2], parts[4]
        job = jobs.get(jid)
        if job is not None:
            if minion in job.waiting:
                job.waiting.discard(minion)
                send({
                    "id": job.id, "minion": minion, "status": "ok",
                    "ret": data.get("return"), "retcode": data.get("retcode"),
                    "success": data.get("success"),
                })
                if not job.waiting:
                    finish(job)
            return
        pjid = probes.get(jid)
        if pjid is not None:
            job = jobs.get(pjid)
            if job is not None and minion in job.waiting:
                job.waiting.discard(minion)
                send({"id": job.id, "minion": minion, "status": "no_return"})
                if not job.waiting:
                    finish(job)

    def check_deadlines():
        now = time.monotonic()
        for job in list(jobs.values()):
            if job.probe_jid is None and now >= job.deadline:
                try:
                    pub = client.run_job(list(job.waiting), "saltutil.find_job", arg=[job.jid],
                                         tgt_type="list", timeout=5, listen=False)
                except Exception as exc:
                    pub = {}
                    sys.stderr.write("salt helper: probe for %s failed: %s\n" % (job.jid, exc))
                job.probe_jid = str(pub["jid"]) if pub and "jid" in pub else "probe-failed-" + job.jid
                probes[job.probe_jid] = job.jid
                job.probe_deadline = now + job.probe_timeout
            elif job.probe_deadline is not None and now >= job.probe_deadline:
                for m in sorted(job.waiting):
                    send({"id": job.id, "minion": m, "status": "unreachable"})
                job.waiting.clear()
                finish(job)

    while True:
        if eof and not jobs:
            return 0
        try:
            item = q.get(timeout=0.05)
        except queue.Empty:
            item = ()
        if item is None:
            eof = True
        elif isinstance(item, tuple) and item:
            on_event(item[1], item[2])
        elif isinstance(item, dict):
            try:
                start(item)
            except Exception:
                rid = item.get("id", 0)
                send({"id": rid, "status": "error", "message": traceback.format_exc().strip().splitlines()[-1]})
                send({"id": rid, "done": True})
        check_deadlines()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
