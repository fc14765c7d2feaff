"""End-to-end tests of the supervisor: the real supervisor binary running stand-in components
(tests/e2e/standin.py, put in place through HEARTH_LIBEXEC_DIR) that speak the same protocols as
the real ones: READY=1 on NOTIFY_SOCKET, LISTEN_FDS sockets, signals. The stand-ins record what
happens to them, so restart policy, stop order and the socket handoff can be checked exactly.

With HEARTH_E2E_REAL=1 the tests that need no stand-in behaviour run against the real edge,
appserver and certd from the build tree instead (the others are skipped)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import (binary, free_port, ipv6_loopback, port_open, read_until_close,  # noqa: E402
                      wait_until)

SUPERVISOR = binary("supervisor", "supervisor")
STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin.py")
REAL = os.environ.get("HEARTH_E2E_REAL") == "1"
standin_only = pytest.mark.skipif(REAL, reason="needs the stand-in components")
COMPONENTS = ("edge", "appserver", "certd")


def write_standins(libexec):
    os.makedirs(libexec, exist_ok=True)
    for name in COMPONENTS:
        path = os.path.join(libexec, name)
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec /usr/bin/python3 {STANDIN} {name} "$@"\n')
        os.chmod(path, 0o755)


class Stack:
    """One supervisor with its config, run dir and stand-ins under a test's directory."""

    def __init__(self, base, procs, modes=None, real=REAL):
        self.base = str(base)
        self.procs = procs
        self.modes = modes or {}
        self.real = real
        self.run_dir = os.path.join(self.base, "run")
        self.port = free_port()
        self.config = os.path.join(self.base, "hearth.yaml")
        self.libexec = os.path.join(self.base, "libexec")
        self.proc = None
        if real:
            self.module = binary("examples", "hello.so")
        else:
            write_standins(self.libexec)
            self.module = os.path.join(self.base, "app.so")
            open(self.module, "w").close()

    def write_config(self, supervisor=None, extra="", sites=None, https=""):
        sup = {"stop_timeout": "1s", "restart_delay": "50ms", "restart_delay_max": "400ms",
               "restart_reset": "5s", "max_restarts": 3, "restart_window": "30s"}
        sup.update(supervisor or {})
        sites = sites if sites is not None else "  - name: example.localhost\n"
        text = (f"run_dir: {self.run_dir}\nstate_dir: {self.base}/state\n"
                f"edge:\n  http: [\"127.0.0.1:{self.port}\"]\n  https: [{https}]\n"
                f"appserver:\n  modules: [{self.module}]\n"
                "supervisor:\n" + "".join(f"  {k}: {v}\n" for k, v in sup.items()) +
                extra + "sites:\n" + sites)
        with open(self.config, "w") as f:
            f.write(text)
        return self.config

    def env(self):
        env = {"STANDIN_DIR": self.base}
        if not self.real:
            env["HEARTH_LIBEXEC_DIR"] = self.libexec
        for name, mode in self.modes.items():
            env["STANDIN_" + name.upper()] = mode
        return env

    def start(self, env=None, wait=True, write=True):
        if write and not os.path.exists(self.config):
            self.write_config()
        full = self.env()
        full.update(env or {})
        self.proc = self.procs.start([SUPERVISOR, "start", "-c", self.config], name="supervisor",
                                     env=full)
        if wait:
            wait_until(lambda: self.all_settled(), timeout=10, what="the stack to come up")
        return self.proc

    def log(self):
        return self.procs.log(self.proc)

    def ctl(self, *args, timeout=15):
        return subprocess.run([SUPERVISOR, *args, "-c", self.config], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **self.env()})

    def status(self):
        r = self.ctl("status", "--json")
        if r.returncode != 0:
            return None
        return {c["name"]: c for c in json.loads(r.stdout)["components"]}

    def state(self, name):
        st = self.status()
        return st[name]["state"] if st else None

    def running_anew(self, name, old_pid):
        """name runs again, in a process other than old_pid (one status: no torn reads)."""
        st = self.status()
        return st is not None and st[name]["state"] == "running" and \
            st[name]["pid"] not in (None, old_pid)

    def all_settled(self):
        st = self.status()
        return st is not None and all(
            c["state"] in ("running", "fatal", "disabled") for c in st.values())

    def events(self, name, checks=False):
        """[(time, event, pid, detail)] the stand-in recorded; its --check runs only with
        checks (they are other processes)."""
        path = os.path.join(self.base, name + ".events")
        if not os.path.exists(path):
            return []
        out = []
        with open(path) as f:
            for line in f:
                t, ev, pid, *rest = line.rstrip("\n").split(" ", 3)
                if ev != "check" or checks:
                    out.append((float(t), ev, int(pid), rest[0] if rest else ""))
        return out

    def count(self, name, what):
        return sum(1 for e in self.events(name) if e[1] == what)

    def wait_exit(self, timeout=10):
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def stack(tmp_path, procs):
    return Stack(tmp_path, procs)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def http_get(port):
    """One HTTP/1.0 request to 127.0.0.1:port, or to a Unix socket when port is a path."""
    if isinstance(port, str):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(3)
        try:
            s.connect(port)
        except OSError:
            s.close()
            raise
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
    with s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk


# --- config errors: exit 2, a message naming the place, nothing started -------------------------

BAD_CONFIGS = {
    "unknown_key": ("edge:\n  htp: [':80']\n", ["2:", "htp"]),
    "wrong_type": ("supervisor:\n  max_restarts: lots\n", ["2:", "max_restarts"]),
    "bad_listen": ("edge:\n  http: ['127.0.0.1:99999']\n", ["edge.http[0]", "99999"]),
    "bad_user": ("user: no-such-user-hearth\n", ["user", "no-such-user-hearth"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_check_and_start_exit_2(stack, case):
    text, needles = BAD_CONFIGS[case]
    with open(stack.config, "w") as f:
        f.write(text)
    r = stack.ctl("check")
    assert r.returncode == 2, r.stderr
    for n in needles + [stack.config]:
        assert n in r.stderr, r.stderr
    p = stack.start(wait=False)
    assert p.wait(timeout=5) == 2
    log = stack.log()
    assert stack.config in log and needles[-1] in log, log
    assert not any(stack.events(n) for n in COMPONENTS), "a component was started"


def test_missing_config_file(stack):
    r = stack.ctl("check")
    assert r.returncode == 2
    assert stack.config in r.stderr and "No such file" in r.stderr
    p = stack.start(wait=False, write=False)
    assert p.wait(timeout=5) == 2
    assert not any(stack.events(n) for n in COMPONENTS), "a component was started"


def test_check_ok(stack):
    stack.write_config()
    r = stack.ctl("check")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def key_pair(d, name):
    """A self-signed certificate and its key, as name.pem and name.key in d."""
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-subj",
                    "/CN=example.com", "-days", "2"], check=True, capture_output=True)
    return cert, key


def site_with_files(cert, key):
    return f"  - name: example.com\n    tls:\n      - cert: {cert}\n        key: {key}\n"


# What a start would fail on, found by `check`: each case is (config, component, reason).
START_FAILURES = {
    "static_root": (lambda d: {"sites": "  - name: example.localhost\n    static:\n"
                                        f"      - prefix: /\n        root: {d}/missing\n"},
                    "edge", "static root"),
    "module_missing": (lambda d: {"module": f"{d}/missing.so"}, "appserver", "cannot load"),
    "module_abi": (lambda d: {"module": binary("appserver", "mod_abi.so")}, "appserver",
                   "ABI version"),
    "cert_missing": (lambda d: {"sites": site_with_files(f"{d}/missing.pem", f"{d}/missing.key")},
                     "edge", "No such file"),
    "key_mismatch": (lambda d: {"sites": site_with_files(key_pair(d, "a")[0], key_pair(d, "b")[1])},
                     "edge", "does not match"),
    "acme_without_agree_tos": (lambda d: {"sites": "  - name: www.example.com\n    tls: acme\n"},
                               "certd", "agree_tos"),
}


@pytest.mark.parametrize("case", sorted(START_FAILURES))
def test_check_finds_what_start_would_fail_on(tmp_path, procs, case):
    """`check` runs each component's own check, so it passes nothing a start then fails on; and
    start refuses it up front too (exit 2, nothing started) instead of a FATAL component."""
    make, component, reason = START_FAILURES[case]
    stack = Stack(tmp_path, procs, real=True)
    setup = make(stack.base)
    stack.module = setup.get("module", stack.module)
    stack.write_config(sites=setup.get("sites"), https=f'"127.0.0.1:{free_port()}"')
    r = stack.ctl("check")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{component} refuses it" in r.stderr and reason in r.stderr, r.stderr
    p = stack.start(wait=False)
    assert p.wait(timeout=20) == 2
    log = stack.log()
    assert reason in log and "nothing started" in log, log


def test_port_in_use_exit_2_nothing_started(stack):
    stack.write_config()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", stack.port))
        busy.listen()
        p = stack.start(wait=False)
        assert p.wait(timeout=5) == 2
    log = stack.log()
    assert "edge.http[0]" in log and f"127.0.0.1:{stack.port}" in log, log
    assert "in use" in log and f"{stack.config}:4:" in log, log
    assert "nothing started" in log
    assert not any(stack.events(n) for n in COMPONENTS), "a component was started"


# --- running: status, stderr prefixes, flags, stop ----------------------------------------------


def test_start_status_and_stop(stack):
    stack.start()
    st = stack.status()
    assert {n: c["state"] for n, c in st.items()} == dict.fromkeys(COMPONENTS, "running")
    pids = [c["pid"] for c in st.values()]
    assert all(pid_alive(p) for p in pids)
    text = stack.ctl("status")
    assert text.returncode == 0
    assert "edge" in text.stdout and "running" in text.stdout and "RESTARTS" in text.stdout
    sock = os.path.join(stack.run_dir, "supervisor.sock")
    assert os.stat(sock).st_mode & 0o777 == 0o600
    if not REAL:
        wait_until(lambda: "edge: edge stand-in started" in stack.log(), what="prefixed stderr")
        assert "appserver: appserver stand-in started" in stack.log()
        starts = {n: stack.events(n)[0][3] for n in COMPONENTS}
        # The components run the supervisor's copy of the config it validated.
        copy = os.path.join(stack.run_dir, "validated.yaml")
        assert f"args=--config {copy}" in starts["edge"]
        assert f"args=-c {copy}" in starts["appserver"]
        assert f"args=--daemon -c {copy}" in starts["certd"]
        assert "fds=http" in starts["edge"] and "fds=app" in starts["appserver"]
        assert "fds= " in starts["certd"] + " "
    r = stack.ctl("stop")
    assert r.returncode == 0, r.stderr
    # `stop` returns once the supervisor is gone.
    assert stack.proc.poll() is not None or stack.wait_exit(2) == 0
    assert stack.proc.returncode == 0
    assert not any(pid_alive(p) for p in pids)
    assert not os.path.exists(sock)


@standin_only
def test_json_logs_stay_json_lines(stack):
    stack.write_config(extra="log_format: json\n")
    stack.start()
    wait_until(lambda: "stand-in started" in stack.log(), what="children's output")
    stack.ctl("stop")
    lines = [json.loads(line) for line in stack.log().splitlines()]
    assert any(o.get("component") == "supervisor" and "stack ready" in o["msg"] for o in lines)
    assert {"component": "edge", "msg": "edge stand-in started, pid " +
            str(stack.events("edge")[0][2])} in lines


@standin_only
@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_listen_forms_any_and_ipv6_only(stack):
    """":PORT" is every address, IPv4 and IPv6; "[::1]:PORT" is IPv6 only, as in nginx."""
    v6_port = free_port()
    stack.write_config()
    with open(stack.config) as f:
        text = f.read().replace(f'  http: ["127.0.0.1:{stack.port}"]\n',
                                f'  http: [":{stack.port}", "[::1]:{v6_port}"]\n')
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    assert "fds=http,http" in stack.events("edge")[0][3]
    assert http_get(stack.port).startswith("HTTP/1.0 200")
    with socket.create_connection(("::1", stack.port), timeout=2):
        pass
    with socket.create_connection(("::1", v6_port), timeout=2):
        pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", v6_port), timeout=2).close()


def test_components_without_work_are_not_started(stack):
    stack.write_config(sites="  - name: example.localhost\n    tls: off\n")
    with open(stack.config) as f:
        text = f.read().replace(f"  modules: [{stack.module}]\n", "  workers: 1\n")
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    st = stack.status()
    assert st["edge"]["state"] == "running"
    assert st["appserver"]["state"] == "disabled" and st["certd"]["state"] == "disabled"


@standin_only
def test_second_instance_refused(stack, procs):
    stack.start()
    second = procs.start([SUPERVISOR, "start", "-c", stack.config], name="second",
                         env=stack.env())
    assert second.wait(timeout=5) == 1
    assert "already running" in procs.log(second)
    assert stack.count("edge", "start") == 1


# --- readiness and systemd notifications --------------------------------------------------------


class SystemdSocket:
    """The NOTIFY_SOCKET systemd would give the supervisor: collects what it is told."""

    def __init__(self, base):
        self.path = os.path.join(base, "systemd-notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.got = []

    def drain(self, until, timeout=5):
        """Collect messages until one contains `until`; False if none did within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
            if any(until in m for m in self.got):
                return True
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


@standin_only
def test_reports_ready_stopping_reloading_to_systemd(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"certd": "readyafter=1.2"})
    with SystemdSocket(stack.base) as ns:
        stack.start(env={"NOTIFY_SOCKET": ns.path}, wait=False)
        wait_until(lambda: stack.state("edge") == "running", what="edge ready")
        # certd has not said READY=1 yet: neither has the stack.
        assert not ns.drain("READY=1", timeout=0.3)
        assert stack.state("certd") == "starting"
        assert any("certd starting" in m for m in ns.got), ns.got
        assert ns.drain("READY=1", timeout=5)
        assert stack.state("certd") == "running"
        # The children's NOTIFY_SOCKET is the supervisor's own, not systemd's: the stand-ins'
        # READY=1 never reached this socket.
        assert sum("READY=1" in m for m in ns.got) == 1
        ns.got.clear()
        os.kill(stack.proc.pid, signal.SIGHUP)
        assert ns.drain("RELOADING=1") and ns.drain("READY=1")
        assert "MONOTONIC_USEC=" in next(m for m in ns.got if "RELOADING=1" in m)
        stack.proc.send_signal(signal.SIGTERM)
        assert ns.drain("STOPPING=1")
        assert stack.wait_exit() == 0


@standin_only
def test_not_ready_while_a_component_is_fatal(tmp_path, procs):
    """systemd must not call the service active while a component is FATAL."""
    stack = Stack(tmp_path, procs, modes={"certd": "exit2"})
    with SystemdSocket(stack.base) as ns:
        stack.start(env={"NOTIFY_SOCKET": ns.path})
        assert ns.drain("certd fatal")
        assert not ns.drain("READY=1", timeout=0.3), ns.got
        assert "stack ready" not in stack.log()
        with open(os.path.join(stack.libexec, "certd"), "w") as f:
            f.write(f'#!/bin/sh\nexec env STANDIN_CERTD= /usr/bin/python3 {STANDIN} certd "$@"\n')
        assert stack.ctl("restart", "certd").returncode == 0
        assert ns.drain("READY=1")
        assert "stack ready" in stack.log()


# --- restart policy ------------------------------------------------------------------------------


@standin_only
def test_crash_restarts_with_growing_backoff(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"appserver": "crash_after=0.05"})
    stack.write_config(supervisor={"max_restarts": 10, "restart_delay": "100ms",
                                   "restart_delay_max": "400ms"})
    stack.start(wait=False)
    wait_until(lambda: stack.count("appserver", "start") >= 5, timeout=10, what="5 starts")
    starts = [e[0] for e in stack.events("appserver") if e[1] == "start"]
    crashes = [e[0] for e in stack.events("appserver") if e[1] == "crash"]
    gaps = [s - c for c, s in zip(crashes, starts[1:])]
    # 100ms, 200ms, 400ms, then capped at 400ms, plus the stand-in's own start-up time (a
    # Python interpreter: allow for a loaded machine).
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4]):
        assert delay - 0.01 <= gap < delay + 0.35, gaps
    st = stack.status()
    assert st["appserver"]["restarts"] >= 4
    assert st["appserver"]["last_exit"] == "exit 1"
    assert "restarting in" in stack.log()


@standin_only
def test_crash_loop_goes_fatal_others_keep_running(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"certd": "crash"})
    stack.start()
    wait_until(lambda: stack.state("certd") == "fatal", what="certd FATAL")
    # max_restarts 3: the first start and three restarts, then no more (no fork storm).
    assert stack.count("certd", "start") == 4
    time.sleep(0.6)
    assert stack.count("certd", "start") == 4
    st = stack.status()
    assert st["edge"]["state"] == "running" and st["appserver"]["state"] == "running"
    assert "FATAL" in stack.log()
    assert http_get(stack.port).startswith("HTTP/1.0 200")
    text = stack.ctl("status").stdout
    assert "fatal" in text
    # An explicit restart tries again.
    assert stack.ctl("restart", "certd").returncode == 0
    wait_until(lambda: stack.count("certd", "start") == 5, what="certd restarted")


@standin_only
def test_fatal_edge_keeps_its_sockets_and_says_so(tmp_path, procs):
    """An edge that exits 2 (config error) cannot be helped by restarting: FATAL at once. The
    site is down, but not silently: the error says so and the sockets stay open, so clients
    wait instead of being told the site is gone, and a restart finds the same sockets."""
    stack = Stack(tmp_path, procs, modes={"edge": "exit2"})
    stack.start()
    assert stack.state("edge") == "fatal"
    assert "edge is FATAL: THE SITE IS DOWN" in stack.log()
    waiting = socket.create_connection(("127.0.0.1", stack.port), timeout=2)
    waiting.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    # Fixed (here: the stand-in told to behave), restarted: the waiting client gets its answer.
    with open(os.path.join(stack.libexec, "edge"), "w") as f:
        f.write(f'#!/bin/sh\nexec env STANDIN_EDGE= /usr/bin/python3 {STANDIN} edge "$@"\n')
    assert stack.ctl("restart", "edge").returncode == 0
    waiting.settimeout(5)
    assert read_until_close(waiting).startswith(b"HTTP/1.0 200")
    # a clean history, as docs/supervisor.md promises
    assert stack.status()["edge"]["restarts"] == 0


@standin_only
def test_config_error_exit_is_fatal_at_once(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"appserver": "exit2"})
    stack.start()
    assert stack.state("appserver") == "fatal"
    assert stack.count("appserver", "start") == 1
    assert "usage/config error" in stack.log()


def test_sigkill_each_component_under_load(stack):
    """SIGKILL each component's main process while clients keep asking the edge and the
    appserver's socket: each is restarted; the failed-request counts are reported, and nothing
    is ever refused."""
    stack.start()
    app_sock = os.path.join(stack.run_dir, "app.sock")
    with ClientLoop(stack.port) as edge_loop, ClientLoop(app_sock) as app_loop:
        for name in COMPONENTS:
            time.sleep(0.2)
            old = stack.status()[name]["pid"]
            os.kill(old, signal.SIGKILL)
            wait_until(lambda: stack.state(name) == "running"
                       and stack.status()[name]["pid"] != old, what=f"{name} restarted")
            assert stack.status()[name]["last_exit"] == "signal 9 (SIGKILL)"
            assert not pid_alive(old)
        time.sleep(0.2)
    for what, loop in (("edge", edge_loop), ("appserver", app_loop)):
        print(f"{what}: {loop.ok} ok, {loop.refused} refused, {loop.failed} cut by SIGKILL")
        assert loop.refused == 0, vars(loop)
        assert loop.ok > 10
    # SIGKILL can only cut the request the killed process was answering.
    assert edge_loop.failed <= 2 and app_loop.failed <= 2
    assert {c["restarts"] for c in stack.status().values()} == {1}


def test_edge_crash_loop_refuses_no_connection(stack):
    """The edge is the site: killed again and again (more often than max_restarts allows), it
    is restarted every time, soon, on the same sockets, and no connection is refused."""
    stack.start()
    with ClientLoop(stack.port) as loop:
        for i in range(6):
            old = stack.status()["edge"]["pid"]
            os.kill(old, signal.SIGKILL)
            wait_until(lambda: stack.running_anew("edge", old), what=f"edge back after kill {i}")
            time.sleep(0.5)  # the drill's pace: clients get served between kills
    print(f"edge x6 SIGKILL: {loop.ok} ok, {loop.refused} refused, {loop.failed} cut")
    assert loop.refused == 0, vars(loop)
    assert loop.failed <= 6 and loop.ok > 20, vars(loop)
    assert stack.status()["edge"]["restarts"] == 6


@standin_only
def test_leftover_workers_of_a_killed_component_are_killed(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"edge": "worker"})
    stack.start()
    worker = int(next(e[3] for e in stack.events("edge") if e[1] == "worker"))
    assert pid_alive(worker)
    old = stack.status()["edge"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: stack.state("edge") == "running" and stack.status()["edge"]["pid"] != old,
               what="edge restarted")
    # it ignores SIGTERM, so the stop timeout (1 s here) ends it
    wait_until(lambda: not pid_alive(worker), timeout=3, what="the old worker gone")
    assert "killed what was still left of process group" in stack.log()


# --- the listening sockets survive the edge -------------------------------------------------------


class ClientLoop:
    """Requests in a loop from a thread; counts answers, refusals and other failures."""

    def __init__(self, port):
        self.port = port
        self.ok = self.refused = self.failed = 0
        self.errors = []
        self.pids = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.done.is_set():
            try:
                reply = http_get(self.port)
            except ConnectionRefusedError:
                self.refused += 1
                continue
            except OSError as e:
                self.failed += 1
                self.errors.append(repr(e))
                continue
            if not reply.startswith("HTTP/"):
                self.failed += 1
                self.errors.append(f"closed without an answer: {reply!r}")
                continue
            self.ok += 1
            if not REAL:
                self.pids.add(reply.split("\r\n\r\n", 1)[1].split()[1])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def test_edge_restart_refuses_no_connection(stack):
    stack.start()
    with ClientLoop(stack.port) as graceful:
        time.sleep(0.2)
        old = stack.status()["edge"]["pid"]
        assert stack.ctl("restart", "edge").returncode == 0
        wait_until(lambda: stack.state("edge") == "running" and stack.status()["edge"]["pid"] != old,
                   what="edge back")
        time.sleep(0.3)
    # A graceful restart loses nothing at all.
    assert graceful.refused == 0 and graceful.failed == 0, vars(graceful)
    assert graceful.ok > 10
    with ClientLoop(stack.port) as killed:
        time.sleep(0.2)
        old = stack.status()["edge"]["pid"]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: stack.state("edge") == "running" and stack.status()["edge"]["pid"] != old,
                   what="edge back")
        time.sleep(0.3)
    # SIGKILL may cut the one request the old edge was answering; none is refused.
    print(f"edge SIGKILL: {killed.ok} ok, {killed.refused} refused, {killed.failed} cut")
    assert killed.refused == 0 and killed.failed <= 1, vars(killed)
    if not REAL:
        assert len(graceful.pids | killed.pids) == 3


def test_appserver_restart_refuses_no_connection(stack):
    """The appserver's socket (appserver.bind) is the supervisor's too: the edge's requests
    wait in its queue while the appserver restarts."""
    stack.start()
    app_sock = os.path.join(stack.run_dir, "app.sock")
    assert os.stat(app_sock).st_mode & 0o777 == 0o660
    with ClientLoop(app_sock) as loop:
        time.sleep(0.2)
        old = stack.status()["appserver"]["pid"]
        assert stack.ctl("restart", "appserver").returncode == 0
        wait_until(lambda: stack.state("appserver") == "running"
                   and stack.status()["appserver"]["pid"] != old, what="appserver back")
        time.sleep(0.3)
    assert loop.refused == 0 and loop.failed == 0, vars(loop)
    assert loop.ok > 10
    if not REAL:
        assert len(loop.pids) == 2


# --- stop order, stop timeout, fast stop ------------------------------------------------------------


@standin_only
def test_graceful_stop_in_order_with_sigkill_after_timeout(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"edge": "slowstop=0.3", "appserver": "ignoreterm"})
    stack.start()
    pids = {n: c["pid"] for n, c in stack.status().items()}
    t0 = time.monotonic()
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.wait_exit() == 0
    took = time.monotonic() - t0
    ev = {n: {e[1]: e[0] for e in stack.events(n)} for n in COMPONENTS}
    # edge first and to its end, then appserver (killed after stop_timeout 1s), then certd.
    assert ev["edge"]["term"] < ev["edge"]["exit"] < ev["appserver"]["term"]
    assert "exit" not in ev["appserver"]
    assert ev["certd"]["term"] - ev["appserver"]["term"] >= 0.95
    assert 1.2 <= took < 4, took
    assert "sending SIGKILL" in stack.log()
    assert not any(pid_alive(p) for p in pids.values())


@standin_only
def test_stop_lets_requests_in_flight_complete(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"edge": "slowanswer=0.5"})
    stack.start()
    pids = [c["pid"] for c in stack.status().values()]
    result = {}
    t = threading.Thread(target=lambda: result.update(reply=http_get(stack.port)))
    t.start()
    wait_until(lambda: stack.count("edge", "accept") == 1, what="request in flight")
    r = stack.ctl("stop")
    t.join()
    assert r.returncode == 0
    assert result["reply"].startswith("HTTP/1.0 200"), result
    assert stack.proc.returncode == 0 or stack.wait_exit(2) == 0
    assert not any(pid_alive(p) for p in pids)


@standin_only
def test_fast_stop_signals_everyone_at_once(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"edge": "slowstop=0.8"})
    stack.start()
    stack.proc.send_signal(signal.SIGINT)
    assert stack.wait_exit() == 0
    ints = [next(e[0] for e in stack.events(n) if e[1] == "int") for n in COMPONENTS]
    # A graceful stop would have waited for the edge's 0.8s.
    assert max(ints) - min(ints) < 0.4, ints


@standin_only
def test_stop_during_backoff_does_not_restart(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"certd": "crash"})
    stack.write_config(supervisor={"restart_delay": "2s", "restart_delay_max": "2s"})
    stack.start(wait=False)
    wait_until(lambda: stack.state("certd") == "backoff", what="certd in backoff")
    assert stack.ctl("stop").returncode == 0
    assert stack.proc.wait(timeout=5) == 0
    assert stack.count("certd", "start") == 1


# --- reload and log reopening ------------------------------------------------------------------


@standin_only
def test_reload_all_one_and_refused(stack):
    stack.start()
    stack.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: all(stack.count(n, "hup") == 1 for n in COMPONENTS), what="HUP to all")
    assert stack.ctl("reload", "edge").returncode == 0
    wait_until(lambda: stack.count("edge", "hup") == 2, what="HUP to edge")
    assert stack.count("appserver", "hup") == 1
    for cmd in ("reload", "restart"):
        r = stack.ctl(cmd, "nosuch")
        assert r.returncode == 1 and "no such component 'nosuch'" in r.stderr, r.stderr
    # A config that no longer loads is refused; the running one stays.
    with open(stack.config, "a") as f:
        f.write("bogus_key: 1\n")
    r = stack.ctl("reload")
    assert r.returncode == 1 and "bogus_key" in r.stderr, r.stderr
    time.sleep(0.2)
    assert stack.count("edge", "hup") == 2
    assert "reload refused" in stack.log()


def test_restart_runs_the_last_validated_config(stack):
    """A broken file on disk (its reload refused) plus a crash is no outage: a restarted
    component runs the config that was last validated, not the file as it is now."""
    stack.start()
    with open(stack.config, "a") as f:
        f.write("bogus_key: 1\n")
    r = stack.ctl("reload")
    assert r.returncode == 1 and "bogus_key" in r.stderr, r.stderr
    for name in COMPONENTS:
        old = stack.status()[name]["pid"]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: stack.running_anew(name, old), what=f"{name} running again")
    assert http_get(stack.port).startswith("HTTP/1.")
    assert {c["state"] for c in stack.status().values()} == {"running"}


def test_reload_is_all_or_nothing_and_names_each_outcome(stack):
    """One component refusing the new config (here the edge, for a missing static root) means
    none takes it: the appserver keeps its module. Each component's outcome is named."""
    if REAL:
        stack.module, new_module = binary("appserver", "mod_v1.so"), binary("appserver", "mod_v2.so")
    else:
        new_module = os.path.join(stack.base, "app2.so")
        open(new_module, "w").close()
    stack.write_config()
    stack.start()
    app_sock = os.path.join(stack.run_dir, "app.sock")
    root = os.path.join(stack.base, "static")
    stack.module = new_module
    stack.write_config(sites=f"  - name: example.localhost\n    static:\n"
                             f"      - prefix: /s/\n        root: {root}\n")
    r = stack.ctl("reload")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "edge: refused:" in r.stderr and "static root" in r.stderr, r.stderr
    assert "appserver: unchanged" in r.stderr and "certd: unchanged" in r.stderr, r.stderr
    if REAL:
        assert "v1" in http_get(app_sock)
    else:
        assert not any(stack.count(n, "hup") for n in COMPONENTS)
    # Fixed, the same reload goes through, for everyone.
    os.mkdir(root)
    r = stack.ctl("reload")
    assert r.returncode == 0, r.stderr
    for name in COMPONENTS:
        assert f"{name}: reloaded" in r.stdout, r.stdout
    if REAL:
        wait_until(lambda: "v2" in http_get(app_sock), what="the new module answering")
    else:
        wait_until(lambda: all(stack.count(n, "hup") == 1 for n in COMPONENTS), what="HUP to all")


@standin_only
def test_reload_waits_for_a_starting_component(tmp_path, procs):
    """SIGHUP's default action kills: a component still starting gets it once READY=1."""
    stack = Stack(tmp_path, procs, modes={"certd": "readyafter=0.8"})
    stack.start(wait=False)
    wait_until(lambda: stack.state("edge") == "running", what="edge ready")
    assert stack.state("certd") == "starting"
    assert stack.ctl("reload").returncode == 0
    wait_until(lambda: stack.count("edge", "hup") == 1, what="edge reloaded")
    assert stack.count("certd", "hup") == 0
    wait_until(lambda: stack.count("certd", "hup") == 1, what="certd reloaded once ready")
    assert stack.state("certd") == "running" and stack.status()["certd"]["restarts"] == 0


@standin_only
def test_usr1_reopens_children_logs(stack):
    stack.start()
    stack.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: all(stack.count(n, "usr1") == 1 for n in COMPONENTS), what="USR1 to all")


def test_usr1_kills_no_component(stack):
    """logrotate's USR1, again and again: every component reopens its logs, none dies of it."""
    stack.start()
    pids = {n: c["pid"] for n, c in stack.status().items()}

    def certd_reopened():
        if REAL:
            return stack.log().count("SIGUSR1: log reopened")
        return stack.count("certd", "usr1")

    for i in range(1, 4):
        stack.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: certd_reopened() == i, what=f"certd's log reopen #{i}")
    st = stack.status()
    assert {n: c["pid"] for n, c in st.items()} == pids
    assert {c["restarts"] for c in st.values()} == {0}, st


@standin_only
def test_certd_asks_for_edge_reload(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"certd": "askreload=edge"})
    stack.start()
    wait_until(lambda: stack.count("edge", "hup") == 1, what="edge reloaded at certd's request")
    assert stack.count("appserver", "hup") == 0
    assert "certd asks to reload edge" in stack.log()


@standin_only
def test_certd_reload_request_revives_a_fatal_edge(tmp_path, procs):
    """The edge exits 2 while HTTPS has no certificate; certd's "certificate changed" is the
    moment to try it again."""
    stack = Stack(tmp_path, procs, modes={"edge": "exit2", "certd": "readyafter=0.5,askreload=edge"})
    stack.start()
    wait_until(lambda: stack.count("edge", "start") == 2, what="edge started again")
    wait_until(lambda: "certd asks to reload edge: restarted (it was FATAL)" in stack.log(),
               what="the reason logged")


# --- the control protocol itself ----------------------------------------------------------------


def test_control_protocol_lines(stack):
    stack.start()
    path = os.path.join(stack.run_dir, "supervisor.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.settimeout(3)
        f = s.makefile("rwb")
        replies = []
        for line in [b'{"cmd":"status"}', b"not json", b'{"cmd":"dance"}',
                     b'{"cmd":"restart"}', b'{"cmd":"restart","name":"nosuch"}']:
            f.write(line + b"\n")
            f.flush()
            replies.append(json.loads(f.readline()))
    assert replies[0]["ok"] is True and len(replies[0]["components"]) == 3
    assert [r["ok"] for r in replies[1:]] == [False] * 4
    assert "bad JSON" in replies[1]["error"]
    assert replies[2]["error"] == "unknown command"
    r = stack.ctl("restart")
    assert r.returncode == 2 and "usage" in r.stderr


def test_client_without_supervisor(stack):
    stack.write_config()
    r = stack.ctl("status")
    assert r.returncode == 1
    assert "supervisor.sock" in r.stderr and "is the supervisor running" in r.stderr


# --- privileges ------------------------------------------------------------------------------------


@standin_only
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_children_run_as_configured_user(procs):
    # Everything must be reachable by "nobody", so not under pytest's private tmp dir.
    base = tempfile.mkdtemp(prefix="hearth-sv-", dir="/tmp")
    os.chmod(base, 0o777)
    try:
        stack = Stack(base, procs)
        stack.write_config(extra="user: nobody\ngroup: nogroup\n")
        stack.start()
        for name in COMPONENTS:
            assert "uid=65534" in stack.events(name)[0][3], stack.events(name)
        # run_dir: ours, shared with the children's group, sticky so they cannot touch our files.
        st = os.stat(stack.run_dir)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 65534, 0o1770)
        st = os.stat(os.path.join(stack.base, "state"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o750)
        st = os.stat(os.path.join(stack.run_dir, "app.sock"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o660)
        sock = os.stat(os.path.join(stack.run_dir, "supervisor.sock"))
        assert sock.st_uid == 0 and sock.st_mode & 0o777 == 0o600
        with open(f"/proc/{stack.proc.pid}/status") as f:
            assert "\nUid:\t0\t" in f.read()
        assert stack.ctl("stop").returncode == 0
    finally:
        subprocess.run(["rm", "-rf", base])


# --- automatic HTTPS: the real stack against Pebble ------------------------------------------------


def make_api_cert(d):
    """A throwaway CA and a 127.0.0.1 certificate for Pebble's API; certd trusts the CA."""
    def ossl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "1",
         "-subj", "/CN=hearth test CA")
    ossl("req", *ec, "-keyout", d / "api.key", "-out", d / "api.csr", "-subj", "/CN=localhost")
    (d / "san").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", d / "api.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
         "-CAcreateserial", "-days", "1", "-out", d / "api.pem", "-extfile", d / "san")


def start_pebble(d, procs, http_port):
    """Pebble validating HTTP-01 on http_port (the edge's), names resolved to 127.0.0.1 by
    pebble-challtestsrv. Returns (directory URL, management port)."""
    make_api_cert(d)
    api, mgmt, dns = free_port(), free_port(), free_port()
    (d / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{api}", "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(d / "api.pem"), "privateKey": str(d / "api.key"),
        "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": ""}}))
    procs.start(["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns}", "-http01", "",
                 "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}",
                 "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""], name="challtestsrv")
    procs.start(["pebble", "-config", str(d / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
                name="pebble", env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "20"})
    wait_until(lambda: port_open(api) and port_open(mgmt), timeout=15, what="pebble")
    return f"https://127.0.0.1:{api}/dir", mgmt


def fetch(port, host, path="/", ctx=None):
    """(status, headers, body) of one HTTP/1.0 GET to 127.0.0.1:port, over TLS (SNI = host)
    when ctx is given."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname=host) if ctx else raw
    with s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def tls_handshake(port, ctx, name):
    import ssl
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname=name):
                return True
    except (OSError, ssl.SSLError):
        return False


@pytest.mark.skipif(not shutil.which("pebble"), reason="needs pebble")
def test_acme_site_comes_up_on_http_then_https_without_restart(tmp_path, procs):
    """The real stack (always, not only with HEARTH_E2E_REAL), a tls: acme site and no
    certificate: the edge starts on HTTP at once, certd gets Pebble's certificate through the
    edge's challenge, the edge reloads and serves HTTPS, with no restart."""
    import ssl
    import urllib.request
    stack = Stack(tmp_path, procs, real=True)
    https_port = free_port()
    directory, mgmt = start_pebble(tmp_path, procs, stack.port)
    name = "site.example.com"
    stack.write_config(
        extra=(f"certd:\n  server: {directory}\n  ca_bundle: {tmp_path}/ca.pem\n"
               "  agree_tos: true\n"),
        sites=f"  - name: {name}\n    tls: acme\n    upstreams: []\n")
    with open(stack.config) as f:
        text = f.read().replace("  https: []\n", f'  https: ["127.0.0.1:{https_port}"]\n')
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    st = stack.status()
    edge_pid = st["edge"]["pid"]
    assert st["edge"]["state"] == "running", st
    # HTTP first: the edge answers before there is any certificate; until then the site is
    # not served in the clear (503), unless certd was already quicker than this.
    status, headers, _ = fetch(stack.port, name)
    assert status in (503, 301), status
    if status == 503:
        assert headers["Retry-After"].isdigit()
    fullchain = os.path.join(stack.base, "state", "certs", name, "fullchain.pem")
    wait_until(lambda: os.path.exists(fullchain), timeout=30, what="certd's certificate")
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with urllib.request.urlopen(f"https://127.0.0.1:{mgmt}/roots/0", context=ctx) as r:
        (tmp_path / "pebble-root.pem").write_bytes(r.read())
    site_ctx = ssl.create_default_context(cafile=str(tmp_path / "pebble-root.pem"))
    wait_until(lambda: tls_handshake(https_port, site_ctx, name), timeout=15,
               what="HTTPS with Pebble's certificate")
    # Now plain HTTP redirects, and HTTPS answers (404: the site has neither files nor app).
    status, headers, _ = fetch(stack.port, name, "/x?y=1")
    assert status == 301 and headers["Location"] == f"https://{name}:{https_port}/x?y=1"
    assert fetch(https_port, name, ctx=site_ctx)[0] == 404
    # No restart: the edge reloaded.
    st = stack.status()
    assert st["edge"]["pid"] == edge_pid and st["edge"]["restarts"] == 0, st
    assert all(c["state"] == "running" for c in st.values()), st
    assert stack.ctl("stop").returncode == 0
    stack.wait_exit()
    assert "runtime error:" not in stack.log() and "Sanitizer" not in stack.log(), stack.log()


def test_internal_site_comes_up_on_https(tmp_path, procs):
    """tls: internal: certd signs with the local CA it creates; the edge picks it up the same
    way, and handshakes for the name fail cleanly before that."""
    import ssl
    stack = Stack(tmp_path, procs, real=True)
    https_port = free_port()
    name = "app.localhost"
    stack.write_config(sites=f"  - name: {name}\n    upstreams: []\n")
    with open(stack.config) as f:
        text = f.read().replace("  https: []\n", f'  https: ["127.0.0.1:{https_port}"]\n')
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    edge_pid = stack.status()["edge"]["pid"]
    ca = os.path.join(stack.base, "state", "internal-ca", "ca.pem")
    wait_until(lambda: os.path.exists(ca), timeout=15, what="the internal CA")
    ctx = ssl.create_default_context(cafile=ca)
    wait_until(lambda: tls_handshake(https_port, ctx, name), timeout=15,
               what="HTTPS with the internal CA's certificate")
    assert fetch(https_port, name, ctx=ctx)[0] == 404
    assert fetch(stack.port, name)[0] == 301
    st = stack.status()
    assert st["edge"]["pid"] == edge_pid and st["edge"]["restarts"] == 0, st
    assert stack.ctl("stop").returncode == 0
    stack.wait_exit()
