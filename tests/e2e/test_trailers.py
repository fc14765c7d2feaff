"""Trailer fields through the edge (RFC 9110 6.5, RFC 9112 7.1.2, RFC 9113 8.1). An upstream's
chunked answer with trailers reaches an HTTP/1.1 client after the last chunk and an HTTP/2 client
as a last HEADERS frame, compressed or not, with the fields no trailer may carry and the
hop-by-hop ones left behind, and bounded as heads are; the upstream hears TE: trailers only when
the client said it. A client's own trailers are dropped (as nginx does) without ever reaching the
upstream or putting the connection out of step. The upstream here is a raw socket server that
writes its answers byte by byte and records every request as it came."""
import socket
import socketserver
import ssl
import subprocess
import threading
import zlib

import pytest

import h2edge  # noqa: F401  (puts tests/h2 on the path)
from h2edge import EDGE, h2client
from hearthkit.certs import make_cert
from hearthkit.ports import free_port

BODY = b'{"message": "hello", "n": 1}\n' * 64
BIG = b"".join(b'{"row": %d, "text": "some words that compress well"}\n' % i
               for i in range(6000))
TRAILERS = [("Grpc-Status", "0"), ("Grpc-Message", "all good"), ("X-Checksum", "sha256=ab12")]
# what no trailer may carry (RFC 9110 6.5.1) and hop-by-hop fields: never relayed
FORBIDDEN = [("Content-Length", "99"), ("Transfer-Encoding", "chunked"), ("Host", "evil.test"),
             ("Set-Cookie", "s=1"), ("Content-Type", "text/evil"), ("Authorization", "Basic eA=="),
             ("Connection", "close"), ("Keep-Alive", "timeout=1"), ("Trailer", "X-Checksum"),
             ("Content-Encoding", "gzip"), ("Location", "https://evil.test/")]


# ---------------------------------------------------------------------------------------------
# the upstream


def read_raw_body(rf, fields):
    """The request body as it came, framing included."""
    if "content-length" in fields:
        return rf.read(int(fields["content-length"]))
    if fields.get("transfer-encoding") != "chunked":
        return b""
    raw = b""
    while True:
        line = rf.readline()
        raw += line
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        raw += rf.read(size + 2)
    while True:  # the trailer section up to its empty line
        line = rf.readline()
        raw += line
        if line in (b"\r\n", b""):
            return raw


def chunked(status_line, body, trailers, ctype=b"application/json"):
    out = [status_line, b"\r\nContent-Type: ", ctype,
           b"\r\nTrailer: Grpc-Status, X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i in range(0, len(body), 16384):
        piece = body[i:i + 16384]
        out += [b"%x\r\n" % len(piece), piece, b"\r\n"]
    out.append(b"0\r\n")
    out += [f"{k}: {v}\r\n".encode() for k, v in trailers]
    out.append(b"\r\n")
    return b"".join(out)


def answer(method, target):
    if target == "/grpc":
        body, trailers = BODY, TRAILERS + FORBIDDEN
    elif target == "/big":
        body, trailers = BIG, TRAILERS
    elif target == "/many":  # more trailer fields than a head may have (edge.max_header_count)
        body, trailers = BODY, [(f"X-T{i}", "v") for i in range(150)]
    else:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    if method == "HEAD":
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return chunked(b"HTTP/1.1 200 OK", body, trailers)


class RawUpstream(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    return
                head += line
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ")
            fields = {k.strip().lower(): v.strip()
                      for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            self.server.seen.append((head, read_raw_body(self.rfile, fields)))
            self.wfile.write(answer(method, target))
            self.wfile.flush()


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Edge:
    host = "localhost"

    def __init__(self, port, upstream):
        self.port, self.upstream = port, upstream


@pytest.fixture
def start(procs, tmp_path):
    servers = []

    def start(*extra):
        cert, key = make_cert(str(tmp_path))
        up = Server(("127.0.0.1", 0), RawUpstream)
        up.seen = []
        servers.append(up)
        threading.Thread(target=up.serve_forever, daemon=True).start()
        port = free_port()
        procs.start_serving([EDGE, "--https", f"127.0.0.1:{port}", "--workers", "1",
                             "--server-name", "localhost", "--cert", cert, "--key", key,
                             "--upstream", f"127.0.0.1:{up.server_address[1]}", *extra],
                            [port], name="edge")
        return Edge(port, up)
    yield start
    for up in servers:
        up.shutdown()
        up.server_close()


# ---------------------------------------------------------------------------------------------
# an HTTP/1.1 client that sees the trailer section (http.client does not)


def h1_connect(edge):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", edge.port), timeout=10),
                        server_hostname="localhost")
    return s, s.makefile("rb")


def read_response(rf):
    """(status, fields lowercased, body, trailer fields in order); the body is None when the
    connection ended before the last chunk, everything None when before the head."""
    line = rf.readline()
    if not line:
        return None, None, None, None
    status = int(line.split()[1])
    fields = {}
    while (line := rf.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        fields[k.strip().lower()] = v.strip()
    if fields.get("transfer-encoding") != "chunked":
        n = fields.get("content-length")
        return status, fields, rf.read(int(n)) if n else rf.read(), []
    body = b""
    while (line := rf.readline()).strip() not in (b"0", b""):
        body += rf.read(int(line, 16))
        rf.read(2)
    if not line:
        return status, fields, None, []
    trailers = []
    while (line := rf.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        trailers.append((k, v.strip()))
    return status, fields, body if line else None, trailers


def sent_te(head):
    return [x for x in head.lower().split(b"\r\n") if x.startswith(b"te:")]


# ---------------------------------------------------------------------------------------------
# response trailers


def test_http11_client_gets_the_trailers_after_the_last_chunk(start):
    """Always when the body is chunked (every HTTP/1.1 recipient parses a trailer section, RFC
    9112 7.1.2), also without TE: trailers and on a connection that closes after it; the
    upstream hears TE: trailers only when the client said it; HTTP/1.0 gets the body alone."""
    e = start()
    s, rf = h1_connect(e)
    s.sendall(b"GET /grpc HTTP/1.1\r\nHost: localhost\r\nTE: trailers\r\nConnection: TE\r\n\r\n")
    status, fields, body, trailers = read_response(rf)
    assert status == 200 and fields["transfer-encoding"] == "chunked"
    assert body == BODY and trailers == TRAILERS
    assert fields["trailer"] == "Grpc-Status, X-Checksum"
    s.sendall(b"GET /grpc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    status, fields, body, trailers = read_response(rf)
    assert fields["connection"] == "close" and fields["transfer-encoding"] == "chunked"
    assert body == BODY and trailers == TRAILERS
    assert rf.read() == b""  # and nothing after the trailer section
    s.close()
    s, rf = h1_connect(e)
    s.sendall(b"GET /grpc HTTP/1.0\r\nHost: localhost\r\nTE: trailers\r\n\r\n")
    status, fields, body, trailers = read_response(rf)
    assert status == 200 and "transfer-encoding" not in fields and body == BODY
    s.close()
    heads = [h for h, _ in e.upstream.seen]
    assert sent_te(heads[0]) == [b"te: trailers"] and b"keep-alive, te\r\n" in heads[0]
    assert sent_te(heads[1]) == [] and sent_te(heads[2]) == [b"te: trailers"]


def test_http2_client_gets_a_last_headers_frame(start):
    e = start()
    c = h2client.Client(e)
    try:
        a = c.fetch("GET", "/grpc", headers=[("te", "trailers")])
        assert a.status == 200 and a.body == BODY
        assert a.trailers == {k.lower(): v for k, v in TRAILERS}
        b = c.fetch("GET", "/big")  # over many DATA frames and window updates
        assert b.status == 200 and b.body == BIG
        assert b.trailers == {k.lower(): v for k, v in TRAILERS}
        h = c.fetch("HEAD", "/grpc")
        assert h.status == 200 and h.body == b"" and h.trailers == {}
    finally:
        c.close()
    heads = [h for h, _ in e.upstream.seen]
    assert sent_te(heads[0]) == [b"te: trailers"] and sent_te(heads[1]) == []


def test_trailers_follow_a_compressed_body(start):
    e = start("--compress")
    s, rf = h1_connect(e)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n")
    status, fields, body, trailers = read_response(rf)
    s.close()
    assert fields["content-encoding"] == "gzip"
    assert zlib.decompress(body, 16 + zlib.MAX_WBITS) == BIG and trailers == TRAILERS
    c = h2client.Client(e)
    try:
        a = c.fetch("GET", "/grpc", headers=[("accept-encoding", "gzip")])
    finally:
        c.close()
    assert a.headers["content-encoding"] == "gzip"
    assert zlib.decompress(a.body, 16 + zlib.MAX_WBITS) == BODY
    assert a.trailers == {k.lower(): v for k, v in TRAILERS}


def test_too_many_trailer_fields_cut_the_response(start):
    """Past edge.max_header_count the upstream's answer is broken, as a head would be: the
    client must not take it for complete. The connections around it go on."""
    e = start()
    s, rf = h1_connect(e)
    s.sendall(b"GET /many HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, _, body, _ = read_response(rf)
    assert status in (None, 200) and body is None
    s.close()
    c = h2client.Client(e)
    try:
        assert c.fetch("GET", "/many").reset is not None
        assert c.fetch("GET", "/grpc").trailers["grpc-status"] == "0"
    finally:
        c.close()


def test_curl_sees_the_trailers(start):
    e = start()
    for proto in ("--http2", "--http1.1"):
        out = subprocess.run(["curl", proto, "-sSk", "-D", "-", "-o", "/dev/null", "--resolve",
                              f"localhost:{e.port}:127.0.0.1", f"https://localhost:{e.port}/grpc"],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        head, _, trailers = out.stdout.decode().lower().partition("\r\n\r\n")
        assert "grpc-status: 0\r\n" in trailers and "x-checksum: sha256=ab12" in trailers, \
            out.stdout
        assert "evil" not in trailers and "set-cookie" not in trailers


# ---------------------------------------------------------------------------------------------
# request trailers: dropped


def test_http11_request_trailers_are_dropped_and_the_connection_stays_in_step(start):
    """A trailer section naming the framing and the host is read as a trailer section and
    dropped: the upstream gets the body with an empty one, and the request after it is the next
    request, nothing smuggled."""
    e = start()
    s, rf = h1_connect(e)
    s.sendall(b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n0\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n"
              b"Host: evil.test\r\nX-Sum: 1\r\n\r\n"
              b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n")
    for _ in range(2):
        status, _, body, _ = read_response(rf)
        assert status == 200 and body == b"ok"
    s.close()
    seen = e.upstream.seen
    assert len(seen) == 2
    assert seen[0][0].startswith(b"POST /up ") and seen[0][1] == b"5\r\nhello\r\n0\r\n\r\n"
    assert seen[1][0].startswith(b"GET /after ")
    assert b"evil" not in b"".join(h + b for h, b in seen)


def test_http2_request_trailers_are_dropped(start):
    """Dropped after nghttp2 checked them: the body goes upstream alone. A trailer section with
    a field that frames the message (content-length) is malformed (RFC 9113 8.1): the stream is
    reset and nothing of it reaches the upstream whole."""
    e = start()
    c = h2client.Client(e)
    try:
        a = c.fetch("POST", "/up", body=b"hello", trailers=[("x-sum", "1"), ("host", "evil.test")])
        b = c.fetch("POST", "/cl", body=b"hello", trailers=[("content-length", "44")])
        after = c.fetch("GET", "/after")
    finally:
        c.close()
    assert a.status == 200 and after.status == 200
    bodies = {h.split(b" ")[1]: body for h, body in e.upstream.seen}
    # with its length when it came whole before the edge dispatched it, else in chunks
    assert bodies[b"/up"] in (b"hello", b"5\r\nhello\r\n0\r\n\r\n")
    assert b.reset is not None and b"/cl" not in bodies
    assert b"evil" not in b"".join(h + b for h, b in e.upstream.seen)
    assert b"x-sum" not in b"".join(h.lower() for h, _ in e.upstream.seen)
