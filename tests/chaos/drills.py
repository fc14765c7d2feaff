"""The drills of issue 13, each on a fresh stack (so one drill's damage does not count in the
next): a fault injected while a bounded client measures what users see. Each returns rows for
the table: the client's counts, the time to recover, the process tree's RSS and fds before
and after, notes, and for the rules the suite asserts, the figures they are checked on."""
import os
import signal
import subprocess
import time

from clients import Load, Slowloris, summarize
from stack import SITE, Nginx, Stack, kill

STATIC = "/1k.html"
APP = "/hello/chaos"

# Per variant: how many faults, how far apart, how long, how much load. certd is killed fewer
# times than supervisor.max_restarts (5 in 60 s), so the drill sees issuance resume rather
# than the restart limit (logrotate's drill shows that limit).
SETTINGS = {
    "short": dict(rate=100, timeout=2.0, edge_kills=10, edge_gap=0.3, app_kills=1, app_gap=1.0,
                  app_timeout="2s", stop_for=3.0, broken_for=2.0, rotations=6,
                  rotate_gap=0.3, certd_rounds=2, slowloris=3000, slow_interval=2.0,
                  slow_connect=1.0, slow_for=4.0, slow_rate=20, soak_for=5.0, settle=1.0),
    "full": dict(rate=200, timeout=5.0, edge_kills=10, edge_gap=2.0, app_kills=3, app_gap=2.0,
                 app_timeout="30s", stop_for=40.0, broken_for=10.0, rotations=6,
                 rotate_gap=10.0, certd_rounds=4, slowloris=3000, slow_interval=10.0,
                 slow_connect=5.0, slow_for=90.0, slow_rate=20, soak_for=600.0, settle=2.0),
}


class Context:
    def __init__(self, build, work, pebble, http_port, variant):
        self.build, self.work, self.pebble, self.http_port = build, work, pebble, http_port
        self.s = SETTINGS[variant]
        self.serial = 0

    def stack(self, **kw):
        self.serial += 1
        return Stack(self.build, self.work, f"stack{self.serial}", self.pebble,
                     self.http_port, **kw).start()

    def nginx(self):
        self.serial += 1
        return Nginx(self.work, f"nginx{self.serial}").start()

    def load(self, port, path=STATIC, rate=None, seconds=60, **kw):
        rate = rate or self.s["rate"]
        # bounded in count too: never more than the rate allows for the longest drill
        return Load(port, path, SITE, rate, timeout=self.s["timeout"],
                    limit=int(rate * (seconds + 60)), **kw)


def row(drill, side, loads, before, after, faults=(), notes="", **checks):
    r = {"drill": drill, "side": side, "before": before, "after": after, "notes": notes}
    r.update(summarize(loads, faults))
    r.update(checks)
    return r


def _with_stack(ctx, body, **kw):
    st = ctx.stack(**kw)
    try:
        return body(st)
    finally:
        st.stop()


def _with_nginx(ctx, body):
    ng = ctx.nginx()
    try:
        return body(ng)
    finally:
        ng.stop()


# --- edge SIGKILL x10 under load, and nginx losing the same number of workers ---------------


def edge_kill(ctx):
    s = ctx.s
    title = f"edge SIGKILL x{s['edge_kills']}, {s['edge_gap']:g} s apart"

    def hearth(st):
        before = st.resources()
        faults, missed = [], 0
        with ctx.load(st.https_port) as load:
            time.sleep(s["settle"])
            for _ in range(s["edge_kills"]):
                # an edge still in its restart backoff is waited for (up to 10 s): every
                # kill hits a running edge
                pid = st.wait_running("edge")
                if pid and kill(pid):
                    faults.append(time.monotonic())
                else:
                    missed += 1
                time.sleep(s["edge_gap"])
            time.sleep(s["settle"])
        edge = st.status().get("edge", {})
        notes = f"edge {edge.get('state', '?')} after, {edge.get('restarts', '?')} restarts"
        if missed:
            notes += f"; not running at {missed} of the kills"
        return row(title, "hearth", [load], before, st.resources(), faults, notes)

    def nginx(ng):
        before = ng.resources()
        faults = []
        with ctx.load(ng.https_port) as load:
            time.sleep(s["settle"])
            for i in range(s["edge_kills"]):
                workers = ng.workers()
                if workers and kill(workers[i % len(workers)]):
                    faults.append(time.monotonic())
                time.sleep(s["edge_gap"])
            time.sleep(s["settle"])
        return row(f"nginx worker SIGKILL x{s['edge_kills']}", "nginx", [load], before,
                   ng.resources(), faults, f"{len(ng.workers())} workers after")

    return [_with_stack(ctx, hearth), _with_nginx(ctx, nginx)]


# --- appserver master, then worker, SIGKILL under load -----------------------------------------


def appserver_kill(ctx):
    s = ctx.s

    def body(st):
        before = st.resources()
        faults, notes = [], []
        with ctx.load(st.https_port, APP) as load:
            time.sleep(s["settle"])
            for _ in range(s["app_kills"]):
                pid = st.pid("appserver")
                if kill(pid):
                    faults.append(time.monotonic())
                if not st.wait_running("appserver", other_than=pid):
                    notes.append("master not back within 10 s")
                time.sleep(s["app_gap"])
            for _ in range(s["app_kills"]):
                workers = st.children(st.pid("appserver") or 0)
                if workers and kill(workers[0]):
                    faults.append(time.monotonic())
                time.sleep(s["app_gap"])
            time.sleep(s["settle"])
        app = st.status().get("appserver", {})
        notes.append(f"appserver {app.get('state', '?')}, {app.get('restarts', '?')} restarts")
        return row(f"appserver master x{s['app_kills']} + worker x{s['app_kills']} SIGKILL",
                   "hearth", [load], before, st.resources(), faults, "; ".join(notes))

    return [_with_stack(ctx, body)]


# --- SIGSTOP / SIGCONT of the whole appserver past its heartbeat timeout ---------------------


def appserver_stop(ctx):
    s = ctx.s

    def body(st):
        before = st.resources()
        with ctx.load(st.https_port, APP, seconds=s["stop_for"]) as load:
            time.sleep(s["settle"])
            master = st.pid("appserver")
            group = [master] + st.children(master)
            for pid in group:
                kill(pid, signal.SIGSTOP)
            time.sleep(s["stop_for"])
            for pid in group:
                kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
            time.sleep(s["settle"] + 1)
        after_workers = st.children(st.pid("appserver") or 0)
        replaced = len(set(group[1:]) - set(after_workers))
        return row(f"appserver SIGSTOP {s['stop_for']:g} s (timeout {s['app_timeout']}), "
                   "SIGCONT", "hearth", [load], before, st.resources(), [resumed],
                   f"{replaced} of {len(group) - 1} workers replaced after SIGCONT")

    return [_with_stack(ctx, body, appserver_timeout=s["app_timeout"])]


# --- reload with a broken file, then a crash ---------------------------------------------------


def reload_broken(ctx):
    s = ctx.s

    def body(st):
        before = st.resources()
        notes = []
        with ctx.load(st.https_port, seconds=s["broken_for"]) as load:
            time.sleep(s["settle"])
            st.write_config(st.config_text().replace("edge:\n", "edge:\n  no_such_key: 1\n"))
            r = st.ctl("reload")
            notes.append(f"reload of the broken file exit {r.returncode}")
            pid = st.pid("edge")
            kill(pid)
            crashed = time.monotonic()
            time.sleep(s["broken_for"])
            # the operator puts the good file back; the edge must be running by then
            st.write_config()
            if not st.pid("edge"):
                notes.append(f"edge {st.status().get('edge', {}).get('state', '?')} until "
                             "`hearth restart edge`")
                st.ctl("restart", "edge")
                st.wait_running("edge")
            time.sleep(s["settle"])
        return row("reload of a broken file, then edge SIGKILL", "hearth", [load], before,
                   st.resources(), [crashed], "; ".join(notes))

    return [_with_stack(ctx, body)]


# --- logrotate: USR1 to the supervisor x6 ------------------------------------------------------


def logrotate(ctx):
    s = ctx.s

    def body(st):
        before = st.resources()
        restarts = {n: c["restarts"] for n, c in st.status().items()}
        with ctx.load(st.https_port) as static, ctx.load(st.https_port, APP) as app:
            time.sleep(s["settle"])
            for _ in range(s["rotations"]):
                st.server.send_signal(signal.SIGUSR1)
                time.sleep(s["rotate_gap"])
            time.sleep(s["settle"])
        st_after = st.status()
        changed = [f"{n} {c['state']} (+{c['restarts'] - restarts.get(n, 0)} restarts)"
                   for n, c in st_after.items()
                   if c["state"] != "running" or c["restarts"] != restarts.get(n, 0)]
        return row(f"logrotate (USR1 to the supervisor) x{s['rotations']}", "hearth",
                   [static, app], before, st.resources(),
                   notes="; ".join(changed) or "no component restarted")

    return [_with_stack(ctx, body)]


# --- certd SIGKILL mid-issuance ----------------------------------------------------------------


def _pubkey(args):
    r = subprocess.run(["openssl", *args, "-pubout" if args[0] == "pkey" else "-pubkey"],
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def cert_key_mismatches(cert_dir):
    """Certificate directories whose fullchain.pem and privkey.pem do not belong together."""
    bad = []
    for name in sorted(os.listdir(cert_dir)) if os.path.isdir(cert_dir) else []:
        d = os.path.join(cert_dir, name)
        cert, key = os.path.join(d, "fullchain.pem"), os.path.join(d, "privkey.pem")
        if not (os.path.exists(cert) or os.path.exists(key)):
            continue
        a = _pubkey(["x509", "-in", cert, "-noout"]) if os.path.exists(cert) else None
        b = _pubkey(["pkey", "-in", key]) if os.path.exists(key) else None
        if a is None or a != b:
            bad.append(name)
    return bad


def certd_kill(ctx):
    s = ctx.s

    def body(st):
        state = os.path.join(st.dir, "state")
        challenges = os.path.join(state, "acme", ".well-known", "acme-challenge")
        certs = os.path.join(state, "certs")
        before = st.resources()
        notes, faults, not_issued = [], [], []
        with ctx.load(st.https_port) as load:
            time.sleep(s["settle"])
            for i in range(s["certd_rounds"]):
                name = f"kill{i}.example.com"
                st.extra_sites.append(name)
                st.write_config()
                pid = st.pid("certd")
                r = st.ctl("reload")
                if r.returncode != 0:
                    notes.append(f"reload {i} exit {r.returncode}")
                # kill at the moment a challenge file is written: mid-issuance
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not (
                        os.path.isdir(challenges) and os.listdir(challenges)):
                    time.sleep(0.001)
                if not (os.path.isdir(challenges) and os.listdir(challenges)):
                    notes.append(f"round {i}: no challenge file seen")
                kill(st.pid("certd") or pid)
                faults.append(time.monotonic())
                cert = os.path.join(certs, name, "fullchain.pem")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not os.path.exists(cert):
                    time.sleep(0.05)
                if not os.path.exists(cert):
                    not_issued.append(name)
            time.sleep(s["settle"])
        leftover = sorted(os.listdir(challenges)) if os.path.isdir(challenges) else []
        mismatched = cert_key_mismatches(certs)
        certd = st.status().get("certd", {})
        notes.append(f"{len(leftover)} challenge files left, {len(mismatched)} cert/key "
                     f"mismatches, certd {certd.get('state', '?')}")
        if not_issued:
            notes.append(f"not issued after the kill: {', '.join(not_issued)}")
        return row(f"certd SIGKILL mid-issuance x{s['certd_rounds']}", "hearth", [load],
                   before, st.resources(), faults, "; ".join(notes),
                   leftover_challenges=len(leftover), mismatched=mismatched)

    return [_with_stack(ctx, body)]


# --- 3,000 slowloris connections beside a normal client -------------------------------------


def slowloris(ctx):
    s = ctx.s
    title = f"{s['slowloris']} slowloris + client at {s['slow_rate']} req/s"

    def measure(side, target):
        before = target.resources()
        crowd = Slowloris(target.http_port, s["slowloris"], s["slow_interval"],
                          s["slow_connect"])
        # enough threads that a request waiting out its timeout does not hold the next
        # back: the client keeps its rate whatever the server does
        with ctx.load(target.https_port, rate=s["slow_rate"], threads=int(s["slow_rate"] * s["timeout"]),
                      seconds=s["slow_for"]) as load:
            time.sleep(s["slow_for"])
        during = target.resources()
        totals = crowd.stop()
        opened = crowd.opened
        time.sleep(s["settle"])   # "after": once the server has seen the crowd go
        notes = (f"slowloris held {opened.get('held')} at first, {totals.get('held')} at the "
                 f"end, {totals.get('closed_by_server')} closed by the server, "
                 f"{totals.get('connect_failed')} connects failed; RSS with them "
                 f"{during['rss_kib']:,} KiB")
        return row(title, side, [load], before, target.resources(), notes=notes)

    return [_with_stack(ctx, lambda st: measure("hearth", st)),
            _with_nginx(ctx, lambda ng: measure("nginx", ng))]


# --- soak --------------------------------------------------------------------------------------


def soak(ctx):
    s = ctx.s

    def body(st):
        before = st.resources()
        half = s["rate"] / 2
        with ctx.load(st.https_port, rate=half, seconds=s["soak_for"]) as static, \
                ctx.load(st.https_port, APP, rate=half, seconds=s["soak_for"]) as app:
            time.sleep(s["soak_for"])
        restarts = sum(c["restarts"] for c in st.status().values())
        return row(f"soak {s['soak_for']:g} s, static + app", "hearth", [static, app], before,
                   st.resources(), notes=f"{restarts} component restarts")

    return [_with_stack(ctx, body)]


ALL = [("edge-kill", edge_kill), ("appserver-kill", appserver_kill),
       ("appserver-stop", appserver_stop), ("reload-broken", reload_broken),
       ("logrotate", logrotate), ("certd-kill", certd_kill), ("slowloris", slowloris),
       ("soak", soak)]
