"""The edge over HTTP/2 with real clients (curl --http2, nghttp, the h2 library): static files
(ranges, 304, precompressed siblings, directory redirects), the proxy both ways (a 10 MB
upload, a download, a slow upstream next to a fast file), plain HTTP staying HTTP/1.1
(redirects, challenges, no h2c), WebSocket on HTTP/1.1, the smuggling rules (requests whose
pseudo-headers or content-length disagree with their frames never reach the upstream) and the
access log."""
import hashlib
import re
import socket
import ssl
import subprocess
import time

import pytest

import h2edge
from hearthkit.procs import wait_until
from h2edge import curl, h2client, h2wire


@pytest.fixture
def edge(procs, tmp_path):
    return h2edge.start(procs, tmp_path, "--max-body-size", "20m")


def test_static_over_h2(edge):
    version, status, head, body = curl(edge, "/static/1m.bin")
    assert (version, status, body) == ("2", 200, edge.file("1m.bin"))
    version, status, head, body = curl(edge, "/static/1k.html", "-r", "100-199")
    assert (version, status, body) == ("2", 206, edge.file("1k.html")[100:200])
    assert "content-range: bytes 100-199/1024" in head
    etag = re.search(r"^etag: (.*?)\r?$", head, re.M).group(1)
    version, status, _, body = curl(edge, "/static/1k.html", "-H", f"If-None-Match: {etag}")
    assert (version, status, body) == ("2", 304, b"")


def test_precompressed_siblings_over_h2(edge):
    for coding, want in (("gzip", b"GZ-SIBLING"), ("br", b"BR-SIBLING")):
        _, status, head, body = curl(edge, "/static/style.css", "-H",
                                     f"Accept-Encoding: {coding}")
        assert (status, body) == (200, want)
        assert f"content-encoding: {coding}" in head and "vary: accept-encoding" in head
    out = subprocess.run(["nghttp", "-v", "-H", "accept-encoding: br",
                          f"https://127.0.0.1:{edge.port}/static/style.css"],
                         capture_output=True, timeout=10).stdout
    assert b"content-encoding: br" in out and b"BR-SIBLING" in out


def test_directory_redirect_over_h2(edge):
    version, status, head, _ = curl(edge, "/static/sub?x=1")
    assert (version, status) == ("2", 301)
    assert "location: /static/sub/?x=1" in head
    assert curl(edge, "/static/sub/")[3] == b"<p>sub</p>\n"


def test_plain_http_stays_http11(edge):
    """No h2c (RFC 9113 3.1 left it out of use): curl's Upgrade: h2c offer is ignored, the
    challenge and the redirect come as HTTP/1.1."""
    version, status, _, body = curl(edge, "/.well-known/acme-challenge/tok-1", scheme="http",
                                    http="--http2")
    assert (version, status, body) == ("1.1", 200, b"tok-1.thumbprint")
    version, status, head, _ = curl(edge, "/page?q=1", scheme="http", http="--http2")
    assert (version, status) == ("1.1", 301)
    assert f"location: https://localhost:{edge.port}/page?q=1" in head


def test_proxy_upload_10mb(edge):
    body = bytes(range(256)) * (10 * 4096)
    version, status, _, answer = curl(edge, "/sum", "--data-binary", "@-", data=body)
    assert (version, status) == ("2", 200)
    assert answer.decode() == f"{len(body)} {hashlib.sha256(body).hexdigest()}"


def test_proxy_upload_over_max_body_size(procs, tmp_path):
    e = h2edge.start(procs, tmp_path, "--max-body-size", "64k")
    c = h2client.Client(e)
    a = c.fetch("POST", "/echo", [("content-length", str(100000))], body=b"x" * 100000)
    assert a.status == 413
    a = c.fetch("POST", "/echo", body=b"y" * 100000)  # no length: counted as it comes
    assert a.status == 413 or a.reset is not None
    c.close()
    assert all(len(r[3]) <= 65536 for r in e.upstream.seen)


def test_proxy_download_and_slow_upstream(edge):
    c = h2client.Client(edge)
    slow = c.request("GET", "/slow")
    big = c.request("GET", "/big?n=3000000")
    fast = c.request("GET", "/static/1k.html")
    started = time.monotonic()
    c.wait(fast)
    assert time.monotonic() - started < 0.5  # not queued behind the slow stream
    a_slow, a_big = c.wait(slow, big, timeout=10)
    assert a_slow.body == b"part0part1part2"
    assert a_big.body == bytes(i % 251 for i in range(3000000))
    c.close()


def test_cookies_joined_and_authority_is_host(edge):
    c = h2client.Client(edge)
    c.fetch("GET", "/who", [("cookie", "a=1"), ("cookie", "b=2")])
    c.close()
    _, path, headers, _ = edge.upstream.seen[-1]
    assert path == "/who"
    assert headers["cookie"] == "a=1; b=2" and headers["host"] == "localhost"
    assert headers["x-forwarded-proto"] == "https"


def test_websocket_stays_on_http11(edge):
    """A WebSocket client offers http/1.1 only; its Upgrade goes through as a tunnel. (Over
    h2 an upgrade field makes a request malformed: tests/h2.)"""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", edge.port), timeout=5),
                         server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        s.sendall(b"frame")
        got = head.split(b"\r\n\r\n", 1)[1]
        while b"echo:frame" not in got:
            got += s.recv(4096)


# --- smuggling: what disagrees with its frames never reaches the upstream --------------------

def post_fields(path, *extra):
    return h2wire.request_fields("POST", path, authority="localhost", extra=list(extra))


SMUGGLING = {
    # content-length above what the DATA frames carry, the head sent ahead of the body so the
    # edge has already passed it upstream when the short body ends
    "short body": ([("content-length", "10")], [h2wire.data(1, b"12345", end_stream=True)]),
    "long body": ([("content-length", "5")], [h2wire.data(1, b"1234"),
                                               h2wire.data(1, b"5678", end_stream=True)]),
    "transfer-encoding": ([("transfer-encoding", "chunked")],
                          [h2wire.data(1, b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
                                       end_stream=True)]),
    "second content-length": ([("content-length", "3"), ("content-length", "30")],
                              [h2wire.data(1, b"abc", end_stream=True)]),
}


@pytest.mark.parametrize("fields,frames", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smuggling_never_reaches_the_upstream(edge, fields, frames):
    w = h2wire.connect(edge)
    w.send(h2wire.headers(1, h2wire.block(post_fields("/record", *fields)), end_stream=False))
    time.sleep(0.2)  # the edge may dispatch the head before the body tells it wrong
    w.send(*frames)
    w.rejected(1)
    w.close()
    # a well-formed request on a new connection, then: nothing else ever arrived whole
    c = h2client.Client(edge)
    assert c.fetch("POST", "/echo", body=b"fine").body == b"fine"
    c.close()
    assert [(m, p) for m, p, _, _ in edge.upstream.seen] == [("POST", "/echo")]


def test_body_with_a_request_inside_stays_a_body(edge):
    """Bytes that look like a request are body bytes: framed anew (chunks) upstream."""
    inner = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
    c = h2client.Client(edge)
    assert c.fetch("POST", "/echo", body=inner).body == inner
    c.close()
    assert [p for _, p, _, _ in edge.upstream.seen] == ["/echo"]


def test_access_log_says_http2(edge):
    curl(edge, "/static/1k.html")
    wait_until(lambda: "HTTP/2.0" in open(edge.access_log).read(), what="access log line")
    line = open(edge.access_log).read().splitlines()[-1]
    assert '"GET /static/1k.html HTTP/2.0" 200 1024' in line
