"""The edge as a reverse proxy, against small Python upstreams (tests/hearthkit/upstreams.py)
and the real appserver: forwarded and hop-by-hop headers, the keep-alive pool, chunked bodies,
502 and 504, round robin past a failed upstream, TCP upstreams, WebSocket tunnels, a static
root that falls through to the application, the one retry of a reused connection, and
appserver reloads that fail no request."""
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import threading
import time

from hearthkit import binary
from hearthkit.clients import client_ctx, https_get, raw, status_of
from hearthkit.procs import wait_until
from hearthkit.upstreams import (TcpHTTPServer, UnixHTTPServer, Upstream, Vanishing,
                                 garbage_upstream, read_head, start_upstream, ws_frame,
                                 ws_read_frame)

APPSERVER = binary("appserver", "appserver")


def test_proxy_forwarded_headers_and_hop_by_hop(start_edge, pki, upstream):
    e = start_edge(upstreams=[f"unix:{upstream}"])
    r, body = https_get(e, pki["ca"], "/echo?q=1", headers={
        "X-Forwarded-For": "203.0.113.7", "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "1", "Keep-Alive": "timeout=9", "TE": "trailers", "X-Keep": "k",
        "X-Forwarded-Proto": "http", "Upgrade": "h2c"})
    assert r.status == 200
    got = json.loads(body)
    h = {k.lower(): v for k, v in got["headers"]}
    names = [k.lower() for k, _ in got["headers"]]
    assert got["target"] == "/echo?q=1"
    assert h["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert h["x-forwarded-proto"] == "https" and names.count("x-forwarded-proto") == 1
    assert h["x-forwarded-host"] == "a.test" and h["host"] == "a.test"
    assert h["x-keep"] == "k"
    for gone in ("x-drop-me", "keep-alive", "upgrade"):
        assert gone not in h, gone
    # TE is hop-by-hop, but the client's "trailers" is a promise for every hop (test_trailers)
    assert h["te"] == "trailers" and h["connection"] == "keep-alive, te"
    # the upstream's hop-by-hop fields stay behind too
    assert r.getheader("X-Kept") == "yes"
    assert r.getheader("X-Secret-Hop") is None and r.getheader("Keep-Alive") is None


def test_proxy_keepalive_pool_reuses_upstream_connections(start_edge, pki, upstream):
    e = start_edge(upstreams=[f"unix:{upstream}"])
    for _ in range(10):
        r, _ = https_get(e, pki["ca"], "/echo")
        assert r.status == 200
    assert sum(Upstream.connections) == 10
    assert len(Upstream.connections) <= 2, Upstream.connections


def test_proxy_chunked_request_body_and_head(start_edge, pki, upstream):
    e = start_edge(upstreams=[f"unix:{upstream}"])

    def gen():
        for i in range(50):
            yield b"%d-" % i * 100
    conn = http.client.HTTPSConnection("127.0.0.1", e.https, context=client_ctx(pki["ca"]))
    sock = socket.create_connection(("127.0.0.1", e.https))
    conn.sock = client_ctx(pki["ca"]).wrap_socket(sock, server_hostname="a.test")
    conn.request("POST", "/echo", body=gen(), headers={"Host": "a.test"},
                 encode_chunked=True)
    r = conn.getresponse()
    got = json.loads(r.read())
    expected = b"".join(gen())
    assert got["body_len"] == len(expected)
    assert got["body_sha"] == hashlib.sha256(expected).hexdigest()
    conn.request("HEAD", "/echo", headers={"Host": "a.test"})
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    conn.request("GET", "/big?n=300000&chunked", headers={"Host": "a.test"})
    r = conn.getresponse()
    assert len(r.read()) == 300000


def test_proxy_502_when_upstream_is_down(start_edge, pki, tmp_path):
    e = start_edge(upstreams=[f"unix:{tmp_path}/none.sock"])
    for _ in range(20):
        r, body = https_get(e, pki["ca"], "/anything")
        assert r.status == 502
    # every request fails the same way: the log says so once, not twenty times
    assert e.log().count("none.sock failed") == 1, e.log()


def test_proxy_504_on_upstream_timeout(start_edge, pki, upstream):
    e = start_edge("--proxy-read-timeout", "1s",
                   upstreams=[f"unix:{upstream}"])
    t0 = time.monotonic()
    r, _ = https_get(e, pki["ca"], "/slow?t=3")
    assert r.status == 504 and time.monotonic() - t0 < 2.5


def test_proxy_502_on_garbage_or_early_close(start_edge, pki, tmp_path):
    for i, reply in enumerate([b"NOT HTTP AT ALL\r\n\r\n", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n"]):
        path = str(tmp_path / f"g{i}.sock")
        srv = garbage_upstream(path, reply)
        e = start_edge(upstreams=[f"unix:{path}"], name=f"edge{i}")
        for _ in range(5):
            r, _ = https_get(e, pki["ca"], "/x")
            assert r.status == 502, reply
        # a broken application breaks every answer: the log says so once, not each time
        assert len(re.findall(r"upstream unix:\S+:? (bad response|closed|failed: closed)", e.log())) == 1, e.log()
        srv.close()


def test_proxy_round_robin_skips_failed_upstream(start_edge, pki, tmp_path):
    Upstream.connections = []
    a = start_upstream(tmp_path / "a.sock", "A")
    b = start_upstream(tmp_path / "b.sock", "B")
    dead = f"unix:{tmp_path}/dead.sock"
    e = start_edge("--upstream-fail-timeout", "30s",
                   upstreams=[f"unix:{tmp_path}/a.sock", dead,
                                     f"unix:{tmp_path}/b.sock"])
    who = []
    for _ in range(8):
        r, body = https_get(e, pki["ca"], "/echo")
        assert r.status == 200
        who.append(json.loads(body)["who"])
    assert set(who) == {"A", "B"}
    assert e.log().count("dead.sock failed") == 1
    a.shutdown(), b.shutdown(), a.server_close(), b.server_close()


def test_proxy_tcp_upstream(start_edge, pki):
    srv = TcpHTTPServer(("127.0.0.1", 0), Upstream)
    srv.name = "tcp"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    e = start_edge(upstreams=[f"127.0.0.1:{srv.server_address[1]}"])
    r, body = https_get(e, pki["ca"], "/echo")
    assert r.status == 200 and json.loads(body)["who"] == "tcp"
    srv.shutdown()
    srv.server_close()


def test_websocket_echo_through_tunnel(start_edge, pki, upstream):
    e = start_edge(upstreams=[f"unix:{upstream}"])
    s = client_ctx(pki["ca"]).wrap_socket(
        socket.create_connection(("127.0.0.1", e.https), timeout=5), server_hostname="a.test")
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    rf = s.makefile("rb")
    head = read_head(rf)
    assert head[0].startswith("HTTP/1.1 101")
    for msg in (b"hello", b"x" * 70000, "héllo".encode()):
        s.sendall(ws_frame(1, msg))
        op, data = ws_read_frame(rf)
        assert op == 1 and data == msg
    s.sendall(ws_frame(8, b""))
    s.close()


def test_root_static_prefix_falls_through_to_upstream(start_edge, pki, site, tmp_path, upstream):
    """static prefix "/" with upstreams: files where they exist, the application for the rest
    (nginx's try_files $uri @app), so a site's pages and its /api/ both work."""
    e = start_edge(sites=[
        "--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
        "--static", f"/={site['www']}", "--upstream", f"unix:{upstream}"])
    r, body = https_get(e, pki["ca"], "/")
    assert r.status == 200 and body == b"<h1>home</h1>\n"
    r, body = https_get(e, pki["ca"], "/style.css")
    assert r.status == 200 and body.startswith(b"body")
    r, body = https_get(e, pki["ca"], "/echo/api/notes?x=1")
    assert r.status == 200 and json.loads(body)["target"] == "/echo/api/notes?x=1"
    r, body = https_get(e, pki["ca"], "/echo", method="POST", body=b"abc")
    assert r.status == 200 and json.loads(body)["method"] == "POST"
    # refused paths are answered by the edge, never handed on
    r, body = https_get(e, pki["ca"], "/escape.txt")
    assert r.status in (403, 404) and b"TOP-SECRET" not in body
    r, body = https_get(e, pki["ca"], "/%2e%2e/secret.txt")
    assert r.status in (400, 404) and b"TOP-SECRET" not in body


def test_proxy_retries_once_when_a_reused_connection_closes_unanswered(start_edge, tmp_path):
    Vanishing.attempts = []
    srv = UnixHTTPServer(str(tmp_path / "v.sock"), Vanishing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    e = start_edge(https=False,
                   sites=["--server-name", "a.test", "--upstream", f"unix:{tmp_path}/v.sock"])

    def ask(method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", e.http, timeout=5)
        c.request(method, path, body=body, headers={"Host": "a.test"})
        r = c.getresponse()
        return r.status, r.read(), r.will_close
    assert ask("GET", "/") == (200, b"GET 0", False)  # pools a connection
    # idempotent, body kept: sent again on a fresh connection (which goes back to the pool, and
    # the client's connection stays open, now that the body's end is noticed)
    assert ask("PUT", "/", b"x" * 3000) == (200, b"PUT 3000", False)
    # not idempotent and already sent: the upstream may have acted on it
    assert ask("POST", "/", b"y" * 10)[0] == 502
    threads = [threading.Thread(target=ask, args=("GET", "/slow")) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    del Vanishing.attempts[:]
    # three connections in the pool, yet one retry only
    assert ask("GET", "/vanish")[0] == 502
    assert Vanishing.attempts == ["GET /vanish"] * 2
    srv.shutdown()
    srv.server_close()


def test_proxy_through_appserver_reloads_fails_no_request(start_edge, procs, tmp_path):
    """Each appserver HUP ends the old workers, which close their idle keep-alive connections
    while the edge may be sending a request on one."""
    sock = str(tmp_path / "app.sock")
    app = procs.start([APPSERVER, "-b", "unix:" + sock, "-w", "2",
                       binary("appserver", "mod_v1.so")], name="appserver")
    wait_until(lambda: "serving (" in procs.log(app), what="appserver up")
    e = start_edge(https=False,
                   sites=["--server-name", "a.test", "--upstream", f"unix:{sock}"])
    # an HTTP/1.0 client without Host is served (the appserver requires Host of HTTP/1.1)
    assert status_of(raw(e.http, b"GET / HTTP/1.0\r\n\r\n")) == 200
    stop, ok, failed = threading.Event(), [], []

    def client(method, body):
        c = http.client.HTTPConnection("127.0.0.1", e.http, timeout=5)
        while not stop.is_set():
            try:
                c.request(method, "/echo" if body else "/", body=body, headers={"Host": "a.test"})
                r = c.getresponse()
                (ok if r.status == 200 else failed).append((r.status, r.read()[:40]))
            except (OSError, http.client.HTTPException) as ex:
                failed.append(repr(ex))
                c.close()
    threads = [threading.Thread(target=client, args=a)
               for a in (("GET", None), ("GET", None), ("PUT", b"z" * 2000))]
    for t in threads:
        t.start()
    for _ in range(8):
        time.sleep(0.15)
        app.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert failed == [] and len(ok) > 100, (failed[:3], len(failed), len(ok))
