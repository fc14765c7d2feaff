"""Shared fixtures for end-to-end tests: where the binaries are, free ports, and processes
that are always stopped when a test ends."""
import os
import re
import socket
import sys
import threading

import pytest

# The helpers of tests and benchmarks are one package, tests/hearthkit.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hearthkit.edge  # noqa: E402
from hearthkit import BUILD, PYTHON, SOURCE, binary  # noqa: E402,F401
from hearthkit.certs import make_ca, make_leaf, make_test_pki  # noqa: E402,F401
from hearthkit.ports import free_port, port_open, unix_open  # noqa: E402,F401
from hearthkit.procs import Processes, children, wait_until  # noqa: E402,F401
from hearthkit.upstreams import Upstream, start_upstream  # noqa: E402


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


@pytest.fixture
def procs(tmp_path):
    ps = Processes(tmp_path)
    yield ps
    ps.stop_all()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The edge tests' certificates, all from one throwaway CA (ca): for a.test an ECDSA
    (serial 1001), an RSA (1002), a second ECDSA (1003) and one valid only from next year; for
    b.test an ECDSA one (2001). Each is (cert_path, key_path)."""
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    p = {"ca": ca[0], "dir": d, "ca_pair": ca}
    p["a_ec"] = make_leaf(d, ca, "a.test", "ec", serial=1001)
    p["a_rsa"] = make_leaf(d, ca, "a.test", "rsa", serial=1002)
    p["b_ec"] = make_leaf(d, ca, "b.test", "ec", serial=2001)
    p["a_ec2"] = make_leaf(d, ca, "a.test", "ec", serial=1003)
    p["future"] = make_leaf(d, ca, "a.test", "ec", start="future")
    return p


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The edge tests' files: a static tree (www) with a file of each type, an index in a
    subfolder, precompressed siblings, a symlink out of it and one inside it; a secret beside
    it; an ACME webroot (acme) with one challenge."""
    d = tmp_path_factory.mktemp("site")
    www = d / "www"
    (www / "sub").mkdir(parents=True)
    (www / "index.html").write_text("<h1>home</h1>\n")
    (www / "sub" / "index.html").write_text("<h1>sub</h1>\n")
    (www / "style.css").write_text("body { color: red }\n")
    (www / "app.js").write_text("console.log(1)\n")
    (www / "data.json").write_text('{"a": 1}\n')
    (www / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    (www / "digits.txt").write_text("0123456789" * 10)
    (www / "page.html").write_text("plain page " * 20)
    (www / "page.html.gz").write_bytes(b"GZ-VARIANT")
    (www / "page.html.br").write_bytes(b"BR-VARIANT")
    (www / "space name.txt").write_text("spaced\n")
    (d / "secret.txt").write_text("TOP-SECRET\n")
    os.symlink(d / "secret.txt", www / "escape.txt")
    os.symlink("style.css", www / "inside-link.css")
    acme = d / "acme"
    (acme / ".well-known" / "acme-challenge").mkdir(parents=True)
    (acme / ".well-known" / "acme-challenge" / "tok_EN-123").write_text("tok_EN-123.thumbprint")
    (acme / "outside.txt").write_text("NOT-A-CHALLENGE")
    return {"dir": d, "www": str(www), "acme": str(acme)}


@pytest.fixture
def start_edge(procs, pki, site):
    """start_edge(*extra, https=True, workers=1, name="edge", sites=None, env=None): the edge
    on free ports serving site a.test (pki's ECDSA certificate, the site's files under / and
    /static/; or the site flags in sites), the ACME webroot, then the flags in extra."""
    def start(*extra, https=True, workers=1, name="edge", sites=None, env=None):
        if sites is None:
            sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
                     "--static", f"/static/={site['www']}", "--static", f"/={site['www']}"]
        return hearthkit.edge.start_edge(procs, *sites, "--acme-webroot", site["acme"], *extra,
                                         https=https, workers=workers, name=name, env=env)
    return start


@pytest.fixture
def upstream(tmp_path):
    """The path of a Unix socket where hearthkit.upstreams.Upstream answers (its connections
    counted afresh for the test)."""
    Upstream.connections = []
    path = tmp_path / "app.sock"
    srv = start_upstream(path)
    yield str(path)
    srv.shutdown()
    srv.server_close()


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
