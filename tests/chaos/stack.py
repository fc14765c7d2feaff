"""What the drills run against: the hearth stack as users run it (`hearth start` with one
YAML file; a tls: acme site whose certificate certd gets from Pebble through the edge), and
nginx-light serving the same files with the same number of workers and connection slots.
Both report the RSS and open fds of their whole process tree."""
import getpass
import json
import os
import shutil
import signal
import subprocess
import time

from clients import one_request, tls_context
from hearthbench import material
from hearthkit.certs import make_cert
from hearthkit.ports import free_port
from hearthkit.procs import SERVER_CPU, Server, tree_fds, tree_pids, tree_rss_kib

SITE = "chaos.example.com"   # a public name: tls: acme, validated by Pebble over loopback
WORKERS = 2                  # edge and nginx workers alike
SLOTS = 1024                 # connections per worker: the edge's default max_connections


class StackError(RuntimeError):
    pass


def _answers(port, host, path):
    return one_request(port, path, host, True, 2.0, tls_context())[0] == "ok"


class Stack:
    """One supervisor with its own run and state directories. The HTTP port is Pebble's
    httpPort, the same for every stack of a run (one stack at a time)."""

    def __init__(self, build, work, name, pebble, http_port, appserver_timeout="30s"):
        self.build = build
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.name = name
        self.pebble = pebble
        self.http_port = http_port
        self.https_port = free_port()
        self.www = os.path.join(work, "www")
        self.config = os.path.join(self.dir, "hearth.yaml")
        self.appserver_timeout = appserver_timeout
        self.extra_sites = []
        self.server = None

    def config_text(self):
        sites = "".join(f"  - name: {n}\n    upstreams: []\n" for n in self.extra_sites)
        return (f"run_dir: {self.dir}/run\nstate_dir: {self.dir}/state\n"
                f"edge:\n  workers: {WORKERS}\n  http: [\"127.0.0.1:{self.http_port}\"]\n"
                f"  https: [\"127.0.0.1:{self.https_port}\"]\n"
                f"appserver:\n  modules: [{self.build}/examples/hello.so]\n  workers: 2\n"
                f"  timeout: {self.appserver_timeout}\n"
                f"certd:\n  server: {self.pebble.directory}\n  ca_bundle: {self.pebble.ca}\n"
                "  agree_tos: true\n"
                f"sites:\n  - name: {SITE}\n    static:\n      - prefix: /\n"
                f"        root: {self.www}\n" + sites)

    def write_config(self, text=None):
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text if text is not None else self.config_text())
        os.rename(tmp, self.config)

    def start(self, timeout=30):
        self.write_config()
        self.server = Server(f"{self.name}-supervisor", [
            os.path.join(self.build, "supervisor", "hearth"), "start", "-c", self.config],
            self.dir, cpu=SERVER_CPU, session=True)
        deadline = time.monotonic() + timeout
        while not (self.all_running() and _answers(self.https_port, SITE, "/1k.html")
                   and _answers(self.https_port, SITE, "/hello/chaos")):
            fatal = [n for n, c in self.status().items() if c["state"] == "fatal"]
            if time.monotonic() > deadline or not self.server.alive() or fatal:
                tail = self.server.log_tail(30)
                self.stop()
                raise StackError(f"the stack did not come up on HTTPS:\n{tail}")
            time.sleep(0.1)
        return self

    def ctl(self, *args, timeout=30):
        return subprocess.run([os.path.join(self.build, "supervisor", "hearth"), *args,
                               "-c", self.config], capture_output=True, text=True,
                              timeout=timeout)

    def status(self):
        r = self.ctl("status", "--json")
        if r.returncode != 0:
            return {}
        return {c["name"]: c for c in json.loads(r.stdout)["components"]}

    def all_running(self):
        st = self.status()
        return bool(st) and all(c["state"] == "running" for c in st.values())

    def pid(self, component):
        c = self.status().get(component, {})
        return c.get("pid") if c.get("state") == "running" else None

    def wait_running(self, component, other_than=None, timeout=10):
        """The component's pid once it runs (as another process than other_than), or None
        (at once if it is FATAL: the supervisor has given up on it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.status().get(component, {})
            if c.get("state") == "running" and c.get("pid") != other_than:
                return c["pid"]
            if c.get("state") == "fatal":
                return None
            time.sleep(0.02)
        return None

    def children(self, pid):
        return [p for p in tree_pids(pid) if p != pid]

    def resources(self):
        return {"rss_kib": tree_rss_kib(self.server.pid), "fds": tree_fds(self.server.pid)}

    def log_count(self, text):
        with open(self.server.log_path, errors="replace") as f:
            return f.read().count(text)

    def stop(self):
        if self.server is None:
            return
        if self.server.alive():
            self.ctl("stop", timeout=60)
            try:
                self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        self.server.stop()


class Nginx:
    """nginx-light with the same files, worker count and connection slots as the edge, on
    HTTPS with a self-signed certificate and on plain HTTP."""

    def __init__(self, work, name="nginx"):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.name = name
        self.www = os.path.join(work, "www")
        self.http_port, self.https_port = free_port(), free_port()
        self.server = None

    def start(self):
        cert, key = make_cert(self.dir)
        conf = material.write_nginx_conf(
            os.path.join(self.dir, "conf"), user=getpass.getuser(), workers=WORKERS,
            connections=SLOTS, cert=cert, key=key, www=self.www,
            gunicorn_sock=os.path.join(self.dir, "unused.sock"), http=self.http_port,
            https=self.https_port, app=free_port())
        self.server = Server(self.name, [shutil.which("nginx"), "-c", conf, "-p",
                                         os.path.dirname(conf)], self.dir, cpu=SERVER_CPU,
                             session=True)
        deadline = time.monotonic() + 15
        while not _answers(self.https_port, SITE, "/1k.html"):
            if time.monotonic() > deadline or not self.server.alive():
                tail = self.server.log_tail()
                self.stop()
                raise StackError(f"nginx did not come up:\n{tail}")
            time.sleep(0.05)
        return self

    def workers(self):
        return [p for p in tree_pids(self.server.pid) if p != self.server.pid]

    def resources(self):
        return {"rss_kib": tree_rss_kib(self.server.pid), "fds": tree_fds(self.server.pid)}

    def stop(self):
        if self.server:
            self.server.stop()


def kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, TypeError):
        return False
