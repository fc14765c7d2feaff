"""Shared fixtures for end-to-end tests: where the binaries are, free ports, and processes
that are always stopped when a test ends."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

BUILD = os.environ.get("HEARTH_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("HEARTH_SOURCE", os.path.join(os.path.dirname(__file__), "../.."))

# One helper package for tests and benchmarks (bench/hearthbench): ports come from there.
sys.path.insert(0, os.path.join(SOURCE, "bench"))
from hearthbench.procs import free_port  # noqa: E402,F401


def binary(*parts):
    """Path of a built file, e.g. binary('edge', 'edge')."""
    return os.path.join(BUILD, *parts)


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def ipv6_loopback():
    """This machine can bind ::1 (tests of IPv6 listeners skip without it)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def unix_open(path):
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.2)
            s.connect(path)
            return True
    except OSError:
        return False


def children(pid):
    """The pids of a process's children (for the appserver master: its workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def recv_until(sock, marker):
    """Read from sock until the bytes read contain marker; all of them. The socket's timeout
    bounds each wait; a close before the marker fails."""
    got = b""
    while marker not in got:
        piece = sock.recv(65536)
        assert piece, f"connection closed before {marker!r}: {got[:500]!r}"
        got += piece
    return got


def read_until_close(sock, stop=None):
    """Everything a server sends on sock until it closes, times out or resets; with stop, also
    return as soon as the bytes read so far contain it. Closes sock."""
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
            if stop is not None and stop in out:
                break
    except (socket.timeout, ConnectionResetError):
        pass
    sock.close()
    return out


class Processes:
    """Starts processes with their output in files under tmp_path; stops them all at teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs = []

    def start(self, args, name=None, env=None, **kw):
        name = name or os.path.basename(args[0])
        log = open(self.tmp_path / f"{name}.log", "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, **kw)
        p.log_path = self.tmp_path / f"{name}.log"
        self.procs.append(p)
        return p

    def start_serving(self, args, ports, name=None, env=None, timeout=20):
        """start(), then wait until the process listens on every one of ports on 127.0.0.1;
        its exit before that fails the test with its log."""
        p = self.start(args, name=name, env=env)
        wait_until(lambda: p.poll() is not None or all(port_open(x) for x in ports),
                   timeout=timeout, what=f"{name or args[0]} to listen")
        assert p.poll() is None, self.log(p)
        return p

    def log(self, p):
        with open(p.log_path, "r", errors="replace") as f:
            return f.read()

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def procs(tmp_path):
    ps = Processes(tmp_path)
    yield ps
    ps.stop_all()


def make_test_pki(d, *sans):
    """A throwaway CA (ca.pem, ca.key) and a certificate it signed for sans ("DNS:localhost",
    "IP:127.0.0.1"...: cert.pem, key.pem), all in folder d, which is returned."""
    def openssl(*args):
        subprocess.run(["openssl", *map(str, args)], capture_output=True, check=True)

    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "2",
            "-subj", "/CN=test CA")
    openssl("req", *ec, "-keyout", d / "key.pem", "-out", d / "csr.pem", "-subj", "/CN=test")
    ext = d / "san.ext"
    ext.write_text(f"subjectAltName={','.join(sans)}\n")
    openssl("x509", "-req", "-in", d / "csr.pem", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
            "-CAcreateserial", "-out", d / "cert.pem", "-days", "2", "-extfile", ext)
    return d

# The example Flask site (examples/notes), served by each WSGI server the tests know: Debian's
# Gunicorn, and hearth's appserver.
NOTES_APP_DIR = os.path.join(SOURCE, "examples", "notes")


def notes_under_gunicorn(port, db, tls=()):
    args = ["/usr/bin/python3", "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
            "--chdir", NOTES_APP_DIR, *tls, "notes.wsgi:app"]
    return args, {"NOTES_DB": db}


def notes_under_appserver(port, db, tls=()):
    assert not tls, "the appserver speaks plain HTTP: TLS is the edge's job"
    args = [binary("appserver", "appserver"), "-w", "2", "-b", f"127.0.0.1:{port}",
            "--chdir", NOTES_APP_DIR, "--env", f"NOTES_DB={db}", "notes.wsgi:app"]
    return args, {}


# The sanitizer run is about our code: the peers' runs would repeat the normal run's exactly.
SANITIZED = os.environ.get("HEARTH_SANITIZED") == "1"

NOTES_SERVERS = [
    pytest.param(notes_under_gunicorn, id="gunicorn", marks=pytest.mark.skipif(
        SANITIZED, reason="a peer: checked in the normal run")),
    pytest.param(notes_under_appserver, id="appserver"),
]


def start_notes(procs, command, db_path, tls=()):
    """Serves the notes site with command (one of NOTES_SERVERS) on a free loopback port and
    returns the port once it accepts connections; tls: extra Gunicorn flags (--certfile ...)."""
    port = free_port()
    args, env = command(port, str(db_path), tls)
    procs.start_serving(args, [port], name="notes", env=env)
    return port


@pytest.fixture(params=NOTES_SERVERS)
def notes_server(request, procs):
    """start(db_path) serves the notes site under each server in turn; returns the port."""
    return lambda db_path: start_notes(procs, request.param, db_path)


def pytest_configure(config):
    config.addinivalue_line("markers", "hearth_only(reason): the server under test must be "
                            "hearth (Gunicorn has no such option); skipped under Gunicorn")
    config.addinivalue_line("markers", "gunicorn_differs(reason): a rule hearth must meet and "
                            "Gunicorn does not; a strict xfail under Gunicorn, which shows "
                            "the test can fail")


# ---- HTTP responses as a client sees them ------------------------------------------------


class Response:
    """One parsed HTTP response: status, headers in order as (name, value) str pairs, the body
    with chunked framing removed, and whether the body was complete (False: the connection
    ended inside a Content-Length or chunked body, i.e. the server aborted it)."""

    def __init__(self, status, headers, body, complete, framing):
        self.status, self.headers, self.body = status, headers, body
        self.complete, self.framing = complete, framing

    def header(self, name):
        """The values of every header called name (case-insensitive)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return (f"Response({self.status}, {self.headers}, {self.body[:200]!r}, "
                f"complete={self.complete}, framing={self.framing})")


def parse_responses(data, methods=("GET",)):
    """Every response in data (bytes read until the server closed), in order; methods[i] is
    the i-th request's method (the last one repeats), which decides whether a body follows."""
    out = []
    while data:
        method = methods[min(len(out), len(methods) - 1)]
        head, sep, data = data.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError(f"incomplete response head: {head[:300]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        r = Response(status, headers, b"", True, "none")
        out.append(r)
        if status < 200:
            out.pop()  # 100 Continue: the real answer follows
            continue
        te = ",".join(r.header("transfer-encoding")).lower()
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in te:
            r.framing, r.complete = "chunked", False
            while True:
                line, sep, rest = data.partition(b"\r\n")
                if not sep:
                    data = b""
                    break
                size = int(line.split(b";")[0], 16)
                if size == 0:  # the last chunk, then trailer fields up to an empty line
                    trailers = rest.find(b"\r\n\r\n")
                    end = 2 if rest.startswith(b"\r\n") else trailers + 4 if trailers >= 0 else -1
                    r.complete = end >= 0
                    data = rest[end:] if r.complete else b""
                    break
                r.body += rest[:size]
                if len(rest) < size + 2:
                    data = b""
                    break
                data = rest[size + 2:]
        elif r.header("content-length"):
            n = int(r.header("content-length")[0])
            r.framing = "content-length"
            r.body, data = data[:n], data[n:]
            r.complete = len(r.body) == n
        else:
            r.framing, r.body, data = "close", data, b""
    return out


# ---- WSGI applications served by hearth or, to check the tests themselves, Gunicorn ------

PYTHON = "/usr/bin/python3"  # Debian's CPython, the one the bridge embeds; not the PATH one
WSGI_APPS = os.path.join(SOURCE, "tests", "wsgi_apps")
WSGI_SERVER = os.environ.get("HEARTH_WSGI_SERVER", "hearth")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if WSGI_SERVER == "hearth":
            continue
        m = item.get_closest_marker("hearth_only")
        if m:
            item.add_marker(pytest.mark.skip(reason="hearth only: " + m.args[0]))
        m = item.get_closest_marker("gunicorn_differs")
        if m:
            item.add_marker(pytest.mark.xfail(strict=True,
                                              reason="Gunicorn differs: " + m.args[0]))


class WsgiServer:
    """A WSGI application served on host:port (127.0.0.1 unless asked) and a Unix socket."""

    def __init__(self, procs, proc, kind, host, port, sock):
        self.procs, self.proc, self.kind = procs, proc, kind
        self.host, self.port, self.sock = host, port, sock

    def log(self):
        return self.procs.log(self.proc)

    def wait_log(self, pattern, timeout=10):
        wait_until(lambda: re.search(pattern, self.log(), re.M), timeout=timeout, what=pattern)

    def connect(self, timeout=10, source=None, unix=False):
        if unix:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(timeout)
            s.connect(self.sock)
            return s
        s = socket.create_connection((self.host, self.port), timeout=timeout,
                                     source_address=(source, 0) if source else None)
        return s

    def exchange(self, data, timeout=10, **kw):
        """Send raw bytes, return everything the server sent until it closed."""
        s = self.connect(timeout=timeout, **kw)
        s.sendall(data)
        return read_until_close(s)

    def request(self, method, target, headers=(), body=None, version="HTTP/1.1", **kw):
        """One request on a fresh connection, Connection: close; the parsed Response."""
        head = f"{method} {target} {version}\r\nHost: wsgi.test\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                        for k, _ in headers):
            head += f"Content-Length: {len(body)}\r\n"
        answer = self.exchange(head.encode("latin-1") + b"\r\n" + (body or b""), **kw)
        responses = parse_responses(answer, [method])
        assert len(responses) == 1, answer[:500]
        return responses[0]

    def get(self, target, **kw):
        return self.request("GET", target, **kw)


def start_wsgi(procs, tmp_path, app, workers=1, chdir=WSGI_APPS, timeout=None, mount=None,
               hearth_args=(), gunicorn_args=(), env=None, wait=True, kind=None,
               host="127.0.0.1"):
    """Serve app ('module:callable') from chdir with `workers` workers, on host and a fresh
    TCP port and on tmp_path/wsgi-KIND-PORT.sock, by hearth's appserver or by Gunicorn (kind,
    default from HEARTH_WSGI_SERVER). Waits until it serves unless wait is False."""
    import resource
    kind = kind or WSGI_SERVER
    port = free_port()
    sock = str(tmp_path / f"wsgi-{kind}-{port}.sock")
    common = ["-w", str(workers), "-b", f"{host}:{port}", "-b", "unix:" + sock,
              "--chdir", str(chdir)]
    if timeout is not None:
        common += ["-t", str(timeout)]
    env = dict(env or {})
    if kind == "hearth":
        argv = [binary("appserver", "appserver"), *common, *hearth_args]
        if mount:
            argv += ["--mount", mount]
    elif kind == "gunicorn":
        argv = [PYTHON, "-m", "gunicorn", *common, "--graceful-timeout", "2", *gunicorn_args]
        if mount:
            env["SCRIPT_NAME"] = mount  # Gunicorn's way to set SCRIPT_NAME
    else:
        raise ValueError(f"HEARTH_WSGI_SERVER={kind}: hearth or gunicorn")
    # crash tests kill workers with SIGSEGV: no core files on machines that keep them
    p = procs.start([*argv, app], name=f"{kind}-{port}", env=env,
                    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    server = WsgiServer(procs, p, kind, host, port, sock)
    if wait:
        ready = "serving (" if kind == "hearth" else "Booting worker"
        wait_until(lambda: p.poll() is not None or (ready in server.log() and
                                                    port_open(port, host)),
                   timeout=20, what=f"{kind} serving {app}")
        assert p.poll() is None, server.log()
    return server


@pytest.fixture
def wsgi(procs, tmp_path):
    """start_wsgi bound to this test's processes and directory: wsgi('app:app', workers=2)."""
    return lambda app, **kw: start_wsgi(procs, tmp_path, app, **kw)


class Load:
    """Clients sending requests continuously, each fetch() returning (status, body): every
    200's body in load.bodies, every other answer or exception in load.failures. As a context
    manager, the clients stop when the block ends, failed assertion or not."""

    def __init__(self, fetch, threads=3):
        self.fetch = fetch
        self.bodies, self.failures = [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()

    def run(self):
        while not self.stop.is_set():
            try:
                st, body = self.fetch()
                (self.bodies if st == 200 else self.failures).append(body if st == 200 else st)
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failures.append(repr(e))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
