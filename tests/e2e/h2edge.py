"""The edge over HTTP/2 for the e2e tests (test_h2_edge.py, test_h2_dos.py): an edge with a
self-signed localhost certificate, static files and a recording HTTP/1.1 upstream, the clients
of the conformance suite (tests/h2: h2wire's raw frames, h2client's well-behaved client), curl
and the worker's RSS."""
import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time

from hearthkit import SOURCE, binary
from hearthkit.certs import make_cert
from hearthkit.ports import free_port, port_open
from hearthkit.procs import wait_until

sys.path.insert(0, os.path.join(SOURCE, "tests", "h2"))
sys.path.insert(0, os.path.join(SOURCE, "bench"))
import h2client  # noqa: E402,F401  (re-exported for the tests)
import h2peers  # noqa: E402
import h2wire  # noqa: E402,F401
from hearthbench import material  # noqa: E402

EDGE = binary("edge", "edge")


class Recorder(h2peers.Echo):
    """The upstream. Records every request whose body arrived whole (what an application
    would have acted on); /echo answers with the body, /sum with its length and SHA-256,
    /big?n=N with N bytes, /slow with three pieces 0.3 s apart, /ws with a 101 and then echoes
    bytes, anything else with 200 and the path."""

    def _send(self, status, body, ctype="application/octet-stream"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self):
        body = self._body()
        if body is None:
            self.close_connection = True
            return
        self.server.seen.append((self.command, self.path,
                                 {k.lower(): v for k, v in self.headers.items()}, body))
        path = self.path.split("?")[0]
        if path == "/echo":
            self._send(200, body)
        elif path == "/sum":
            self._send(200, f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode(),
                       "text/plain")
        elif path == "/big":
            n = int(self.path.split("n=")[1])
            self._send(200, bytes(i % 251 for i in range(n)))
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                self.wfile.write(b"5\r\npart" + str(i).encode() + b"\r\n")
                self.wfile.flush()
                time.sleep(0.3)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/ws":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            data = self.rfile.read1(65536)
            self.wfile.write(b"echo:" + data)
            self.wfile.flush()
            self.close_connection = True
        else:
            self._send(200, path.encode(), "text/plain")

    do_GET = do_POST = do_PUT = do_HEAD = _answer


def start_recorder():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
    srv.daemon_threads = True
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class Edge:
    """What a test needs of the running edge: its ports, files, upstream and log."""
    host = "localhost"

    def __init__(self, proc, port, http_port, www, upstream, access_log):
        self.proc, self.port, self.http_port, self.www = proc, port, http_port, www
        self.upstream, self.access_log = upstream, access_log

    def file(self, name):
        with open(os.path.join(self.www, name), "rb") as f:
            return f.read()

    def url(self, path):
        return f"https://localhost:{self.port}{path}"

    def worker_pid(self):
        """The one worker's pid (the edge runs a master and one worker)."""
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
        return kids[0] if kids else self.proc.pid

    def rss_kib(self):
        with open(f"/proc/{self.worker_pid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def served(self):
        """A normal client still gets a file, quickly."""
        c = h2client.Client(self)
        try:
            a = c.fetch("GET", "/static/1k.html", timeout=3)
            return a.status == 200 and a.body == self.file("1k.html")
        finally:
            c.close()


def start(procs, tmp_path, *extra):
    """An edge with one site: /static/ from a directory (1k.html, 1m.bin, style.css with its
    .gz and .br siblings, a sub/ directory), everything else to a recording upstream, an ACME
    webroot with one token on plain HTTP, and an access log."""
    cert, key = make_cert(str(tmp_path))
    www = os.path.join(str(tmp_path), "www")
    material.make_files(www)
    os.makedirs(os.path.join(www, "sub"), exist_ok=True)
    with open(os.path.join(www, "sub", "index.html"), "wb") as f:
        f.write(b"<p>sub</p>\n")
    with open(os.path.join(www, "style.css"), "wb") as f:
        f.write(b"body { color: red }\n" * 50)
    for ext, data in ((".gz", b"GZ-SIBLING"), (".br", b"BR-SIBLING")):
        with open(os.path.join(www, "style.css" + ext), "wb") as f:
            f.write(data)
    acme = os.path.join(str(tmp_path), "acme")
    os.makedirs(os.path.join(acme, ".well-known", "acme-challenge"))
    with open(os.path.join(acme, ".well-known", "acme-challenge", "tok-1"), "w") as f:
        f.write("tok-1.thumbprint")
    up = start_recorder()
    port, http_port = free_port(), free_port()
    access_log = os.path.join(str(tmp_path), "access.log")
    p = procs.start([EDGE, "--https", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http_port}",
                     "--workers", "1", "--server-name", "localhost", "--cert", cert, "--key", key,
                     "--static", f"/static/={www}", "--upstream",
                     f"127.0.0.1:{up.server_address[1]}", "--acme-webroot", acme,
                     "--access-log", access_log, *extra], name="edge")
    wait_until(lambda: p.poll() is not None or (port_open(port) and port_open(http_port)),
               what="edge listening")
    assert p.poll() is None, procs.log(p)
    return Edge(p, port, http_port, www, up, access_log)


def curl(edge, path, *args, data=None, scheme="https", http="--http2"):
    """curl; returns (http version, status, lowercased head, body)."""
    port = edge.port if scheme == "https" else edge.http_port
    out = subprocess.run(["curl", http, "-sSk", "--resolve", f"localhost:{port}:127.0.0.1",
                          "-D", "-", "-w", "\n%{http_version} %{http_code}", *args,
                          f"{scheme}://localhost:{port}{path}"],
                         input=data, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition(b"\n")
    version, status = tail.decode().split()
    head, _, body = body.partition(b"\r\n\r\n")
    return version, int(status), head.decode().lower(), body


class Loop:
    """A client that keeps `depth` requests in flight for `seconds`, as a browser does across a
    server's graceful GOAWAY: streams above the GOAWAY's last stream were not processed
    (RFC 9113 6.8) and go again on a new connection; every other one must be answered 200
    with the file. Counts answers, failures, GOAWAYs and connections. (On h2wire's frames: the
    h2 library takes a GOAWAY for the end of every stream.)"""

    def __init__(self, edge, path="/static/1k.html", depth=4):
        self.edge, self.path, self.depth = edge, path, depth
        self.want = edge.file(path.split("/static/")[1])
        self.ok = self.failed = self.goaways = self.connections = 0
        self.errors = []

    def run(self, seconds):
        deadline = time.monotonic() + seconds
        retry = 0
        while time.monotonic() < deadline or retry:
            retry = self._connection(deadline, retry)
        return self

    def _fail(self, why):
        self.failed += 1
        self.errors.append(why)

    def _connection(self, deadline, retry):
        self.connections += 1
        w = h2wire.connect(self.edge)
        block = h2wire.request_block(path=self.path)
        open_, sid, last_ok = {}, 1, None  # stream -> [status, body]
        try:
            while True:
                while last_ok is None and len(open_) < self.depth and \
                        (retry or time.monotonic() < deadline):
                    w.send(h2wire.headers(sid, block))
                    open_[sid] = [None, b""]
                    sid += 2
                    retry = max(0, retry - 1)
                if not open_:
                    return retry
                f = w.next_frame(time.monotonic() + 5)
                if f.type == h2wire.GOAWAY:
                    self.goaways += 1
                    last = int.from_bytes(f.payload[:4], "big") & 0x7FFFFFFF
                    last_ok = last if last_ok is None else min(last_ok, last)
                    if f.error_code != h2wire.NO_ERROR:
                        self._fail(f"GOAWAY {h2wire.error_name(f.error_code)}")
                    for s in [s for s in open_ if s > last_ok]:
                        del open_[s]
                        retry += 1
                elif f.type == h2wire.RST_STREAM and f.stream_id in open_:
                    del open_[f.stream_id]
                    if f.error_code == h2wire.REFUSED_STREAM:
                        retry += 1
                    else:
                        self._fail(f"stream {f.stream_id}: {f!r}")
                elif f.stream_id in open_ and f.type in (h2wire.HEADERS, h2wire.DATA):
                    a = open_[f.stream_id]
                    if f.fields:
                        a[0] = dict(f.fields).get(":status")
                    if f.type == h2wire.DATA and f.payload:
                        a[1] += h2wire.data_of(f)
                        w.send(h2wire.window_update(0, len(f.payload)),
                               h2wire.window_update(f.stream_id, len(f.payload)))
                    if f.flags & h2wire.END_STREAM:
                        del open_[f.stream_id]
                        if a[0] == "200" and a[1] == self.want:
                            self.ok += 1
                        else:
                            self._fail(f"stream {f.stream_id}: {a[0]} {len(a[1])} octets")
        except (h2wire.Closed, TimeoutError, OSError) as e:
            lost = [s for s in open_ if last_ok is None or s <= last_ok]
            for s in lost:
                self._fail(f"stream {s}: {type(e).__name__} before its answer")
            return retry + len(open_) - len(lost)
        finally:
            w.close()
