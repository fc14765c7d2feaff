"""The supervisor under test: a Stack is one supervisor with its config, run directory and
components under a test's directory; the components are stand-ins (tests/e2e/standin.py,
which record what happens to them) or, with real=True (HEARTH_E2E_REAL=1 for a whole run), the
real edge, appserver and certd of the build. SystemdSocket plays systemd's NOTIFY_SOCKET;
ClientLoop sends requests from a thread and counts what fails."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from . import binary
from .clients import http10_text
from .ports import free_port
from .procs import wait_until

SUPERVISOR = binary("supervisor", "hearth")
STANDIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e",
                       "standin.py")
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
                reply = http10_text(self.port)
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
