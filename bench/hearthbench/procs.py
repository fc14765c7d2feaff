"""Processes pinned to a core, waiting for them to answer, and their memory.

Servers run on SERVER_CPU and every load generator on CLIENT_CPU (taskset), so a server never
competes with the client that measures it for a core."""
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time

SERVER_CPU = os.environ.get("SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("CLIENT_CPU", "1")


class Server:
    """One server process (and its children) in a process group of its own, pinned to the
    server core; its output goes to a log file in the work directory."""

    def __init__(self, name, argv, workdir, env=None, cwd=None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + argv, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                     start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=10):
        if self.log.closed:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.log.close()

    def log_tail(self, n=20):
        with open(self.log_path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode(errors="replace")


def client_argv(argv):
    """A load generator's command line, pinned to the client core."""
    return ["taskset", "-c", CLIENT_CPU] + argv


MAX_CHECK_RESPONSE = 4 << 20  # the readiness checks fetch small pages; stop reading beyond


def http_get(url_host, port, path="/", tls=False, unix=None, timeout=2.0):
    """One GET with a fresh connection; returns (status, body) or raises OSError."""
    if unix:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(unix)
    else:
        sock = socket.create_connection((url_host, port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    with sock:
        # the Host wrk and h2load send: the address, as in the URL
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while len(data) < MAX_CHECK_RESPONSE:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def encoded_body(host, port, path, accept, timeout=5.0):
    """One GET with Accept-Encoding: accept; returns (its Content-Encoding or None, the length
    of its body as sent, before any decoding)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": accept, "Host": host})
        r = conn.getresponse()
        return r.getheader("Content-Encoding"), len(r.read())
    finally:
        conn.close()


def wait_answering(server, port=None, path="/", tls=False, unix=None, timeout=20.0):
    """Waits until the server answers a GET with 200 and returns the body. If it dies or
    does not answer in time, stops it (so its ports are free) and raises with its log."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline and server.alive():
        try:
            status, body = http_get("127.0.0.1", port, path, tls=tls, unix=unix)
            if status == 200:
                return body
            last = f"status {status}"
        except (OSError, ValueError, IndexError) as e:
            last = str(e)
        time.sleep(0.05)
    why = "exited" if not server.alive() else f"did not answer {path} within {timeout:.0f} s"
    tail = server.log_tail()
    server.stop()
    raise RuntimeError(f"{server.name} {why} ({last}):\n{tail}")


def _children():
    """pid -> its child pids, for every process (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            continue
    return children


def child_pids(pid):
    return _children().get(pid, [])


def tree_pids(pid):
    """pid and all its descendants."""
    children = _children()
    out, pending = [], [pid]
    while pending:
        p = pending.pop()
        out.append(p)
        pending.extend(children.get(p, []))
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid):
    return sum(rss_kib(p) for p in tree_pids(pid))


def tree_fds(pid):
    """Open file descriptors of pid and all its descendants."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total


_ports_given = set()


def free_port():
    """A port nothing listens on now, never the same one twice in a run (the kernel may hand a
    just-released port out again, and two servers of one run would then collide). The tests
    (tests/e2e/conftest.py) and tests/chaos/run take theirs from here too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
