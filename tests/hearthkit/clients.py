"""What the tests' clients send and read: raw bytes on a plain or TLS connection, one HTTPS
request, many connections held open, curl and openssl s_client, responses parsed as a client
sees them, a certificate's serial as a handshake shows it, and threads that keep sending
requests (Load)."""
import http.client
import re
import socket
import ssl
import subprocess
import threading

from .certs import serial_of


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


def client_ctx(ca, **kw):
    """A TLS client context that trusts the CA file ca, with attributes set from kw."""
    ctx = ssl.create_default_context(cafile=ca)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def https_get(edge, ca, path, host="a.test", headers=None, method="GET", body=None):
    """One request to edge's TLS port (SNI and Host: host); (response, body)."""
    conn = http.client.HTTPSConnection("127.0.0.1", edge.https, context=client_ctx(ca),
                                       timeout=10)
    conn._server_hostname = host  # SNI and certificate check against the site name
    conn.sock = None
    sock = socket.create_connection(("127.0.0.1", edge.https), timeout=10)
    conn.sock = client_ctx(ca).wrap_socket(sock, server_hostname=host)
    h = {"Host": host}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r, data


def raw(port, data, tls=None, host="a.test", timeout=5, read_all=True):
    """Send bytes as they are; return everything the server answers until it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        s = tls.wrap_socket(s, server_hostname=host)
    s.sendall(data)
    return read_until_close(s, stop=None if read_all else b"\r\n\r\n")


def tls_requests(edge, ca, n, request, answered=None):
    """n TLS connections that each sent request (and, with answered, got an answer holding
    it), left open."""
    tls = client_ctx(ca)
    socks = []
    for _ in range(n):
        s = tls.wrap_socket(socket.create_connection(("127.0.0.1", edge.https), timeout=10),
                            server_hostname="a.test")
        s.sendall(request)
        if answered is not None:
            assert answered in s.recv(4096)
        socks.append(s)
    return socks


def status_of(resp):
    m = re.match(rb"HTTP/1\.1 (\d{3})", resp)
    return int(m.group(1)) if m else None


def curl(*args):
    r = subprocess.run(["curl", "-s", "--max-time", "20"] + list(args), capture_output=True)
    return r


def statuses(resp):
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", resp)]


def s_client(port, *args, servername="a.test", data=b"", timeout=10):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", servername]
    cmd += list(args)
    return subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)


def handshake_serial(port, host="a.test", ctx=None):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with (ctx or ssl.create_default_context()).wrap_socket(s, server_hostname=host) as t:
            return serial_of(ssl.DER_cert_to_PEM_cert(t.getpeercert(True)).encode())


def http10_text(port):
    """The answer, as text, to one HTTP/1.0 GET / to 127.0.0.1:port, or to a Unix socket when
    port is a path."""
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


def http10_fetch(port, host, path="/", ctx=None):
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


def handshake_fails(port, host, ctx):
    """Whether a TLS handshake with SNI host fails (or the connection does)."""
    try:
        handshake_serial(port, host, ctx)
    except OSError:  # ssl.SSLError among them
        return True
    return False


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
