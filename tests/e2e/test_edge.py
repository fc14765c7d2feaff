"""End-to-end tests of the edge: the real binary on loopback against curl, openssl s_client and
Python's ssl/http.client, with small Python upstreams (a threaded HTTP/1.1 server on a unix
socket, and raw sockets for garbage and silence)."""
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from hearthkit import binary
from hearthkit.clients import (client_ctx, curl, handshake_serial, https_get, raw, status_of,
                               tls_requests)
from hearthkit.edge import Edge
from hearthkit.ports import free_port, port_open
from hearthkit.procs import pid_alive, rss_kib, wait_until
from hearthkit.upstreams import (TcpHTTPServer, UnixHTTPServer, Upstream, Vanishing,
                                 garbage_upstream, read_head, start_upstream, ws_frame,
                                 ws_read_frame)

EDGE = binary("edge", "edge")

# ---------------------------------------------------------------------------------------------
# the edge

# ---------------------------------------------------------------------------------------------
# plain HTTP: redirects and ACME challenges

# ---------------------------------------------------------------------------------------------
# static files

# ---------------------------------------------------------------------------------------------
# TLS

# ---------------------------------------------------------------------------------------------
# limits and timeouts

# ---------------------------------------------------------------------------------------------
# reverse proxy


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
    for gone in ("x-drop-me", "keep-alive", "te", "upgrade"):
        assert gone not in h, gone
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
    assert e.log().count("skipping it for") == 1, e.log()


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
        assert len(re.findall(r"upstream unix:\S+: (bad response|closed)", e.log())) == 1, e.log()
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


# ---------------------------------------------------------------------------------------------
# listeners


def test_ipv6_listener(start_edge):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    e = start_edge("--http", f"[::1]:{port}")
    r = curl("-g", "-i", f"http://[::1]:{port}/x", "-H", "Host: a.test")
    assert r.stdout.startswith(b"HTTP/1.1 301"), r


def test_inherited_listen_fds(procs, pki, site):
    """Sockets handed down as systemd socket activation does: fds 3.. with names."""
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(16)
    tls = socket.socket()
    tls.bind(("127.0.0.1", 0))
    tls.listen(16)
    hp, sp = plain.getsockname()[1], tls.getsockname()[1]

    # A tiny wrapper moves the two sockets to fds 3 and 4 and sets LISTEN_PID to its own pid,
    # which exec hands on to the edge, as systemd's socket activation does.
    move = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[3], sys.argv[3:])")
    args = ["/usr/bin/python3", "-c", move, str(plain.fileno()), str(tls.fileno()), EDGE,
            "--https", ":1", "--workers", "2",
            "--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
            "--static", f"/={site['www']}"]
    p = procs.start(args, env={"LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:https"},
                    pass_fds=(plain.fileno(), tls.fileno()))
    plain.close()
    tls.close()
    e = Edge(p, hp, sp)
    wait_until(lambda: "listening" in e.log() or p.poll() is not None)
    assert status_of(raw(hp, b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")) == 301
    r, body = https_get(e, pki["ca"], "/")
    assert r.status == 200 and body == b"<h1>home</h1>\n"


# ---------------------------------------------------------------------------------------------
# lifecycle: reload, stop, reopen


def test_sigterm_finishes_inflight_then_exits(start_edge, pki, upstream):
    e = start_edge(upstreams=[f"unix:{upstream}"])
    idle = socket.create_connection(("127.0.0.1", e.http))
    result = {}

    def slow():
        result["r"] = https_get(e, pki["ca"], "/slow?t=1")
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)
    e.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert not port_open(e.https)  # no longer accepting
    assert idle.recv(10) == b""  # idle connections closed at once
    t.join()
    assert result["r"][0].status == 200 and result["r"][1] == b"slow done"
    assert e.proc.wait(timeout=5) == 0


def test_access_log_combined_and_usr1_reopen(start_edge, pki, tmp_path):
    log = tmp_path / "access.log"
    e = start_edge("--access-log", str(log))
    https_get(e, pki["ca"], "/style.css",
              headers={"User-Agent": 'agent "quoted"', "Referer": "http://r/"})
    raw(e.http, b"GET /x?y HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    wait_until(lambda: log.exists() and log.read_text().count("\n") >= 2)
    lines = log.read_text().splitlines()
    assert re.match(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                    r'"GET /style\.css HTTP/1\.1" 200 20 "http://r/" "agent \\x22quoted\\x22"$',
                    lines[0]), lines[0]
    assert '"GET /x?y HTTP/1.1" 301 0 "-" "-"' in lines[1]
    os.rename(log, str(log) + ".1")
    e.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    https_get(e, pki["ca"], "/app.js")
    wait_until(lambda: log.exists() and "app.js" in log.read_text())
    assert "app.js" not in open(str(log) + ".1").read()


def test_access_log_json_and_hsts(start_edge, pki, site, tmp_path):
    log = tmp_path / "access.json"
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--static", f"/={site['www']}", "--hsts", "180d"]
    e = start_edge("--access-log", str(log), "--access-log-format", "json",
                   sites=sites)
    r, _ = https_get(e, pki["ca"], "/data.json")
    assert r.getheader("Strict-Transport-Security") == "max-age=15552000; includeSubDomains"
    wait_until(lambda: log.exists() and log.read_text().strip())
    rec = json.loads(log.read_text().splitlines()[0])
    assert rec["method"] == "GET" and rec["target"] == "/data.json" and rec["status"] == 200
    assert rec["body_bytes_sent"] == 9 and rec["tls"] is True and rec["host"] == "a.test"
    # plain HTTP answers carry no HSTS (RFC 6797 7.2)
    assert b"Strict-Transport" not in raw(e.http, b"GET / HTTP/1.1\r\nHost: a.test\r\n"
                                                  b"Connection: close\r\n\r\n")


def test_config_file(procs, pki, site, tmp_path, upstream):
    hp, sp = free_port(), free_port()
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"""
run_dir: {tmp_path}
state_dir: {tmp_path}
edge:
  workers: 1
  http: ["127.0.0.1:{hp}"]
  https: ["127.0.0.1:{sp}"]
  header_timeout: 5s
sites:
  - name: a.test
    tls:
      - cert: {pki['a_ec'][0]}
        key: {pki['a_ec'][1]}
    hsts: 1d
    static:
      - prefix: /assets/
        root: {site['www']}
        cache_control: "max-age=60"
    upstreams: ["unix:{upstream}"]
  - name: b.test
    tls:
      - cert: {pki['b_ec'][0]}
        key: {pki['b_ec'][1]}
    static:
      - prefix: /
        root: {site['www']}/sub
""")
    p = procs.start([EDGE, "--config", str(cfg)])
    wait_until(lambda: port_open(sp) or p.poll() is not None)
    assert p.poll() is None, procs.log(p)
    e = Edge(p, hp, sp)
    r, _ = https_get(e, pki["ca"], "/assets/style.css")
    assert r.status == 200 and r.getheader("Cache-Control") == "max-age=60"
    assert r.getheader("Strict-Transport-Security").startswith("max-age=86400")
    r, body = https_get(e, pki["ca"], "/echo")
    assert json.loads(body)["target"] == "/echo"
    r, body = https_get(e, pki["ca"], "/", host="b.test")
    assert body == b"<h1>sub</h1>\n"
    assert handshake_serial(sp, "b.test", client_ctx(pki["ca"])) == 2001
    bad = tmp_path / "bad.yaml"
    bad.write_text("edge:\n  nonsense: 1\n")
    r = subprocess.run([EDGE, "--config", str(bad)], capture_output=True)
    assert r.returncode == 2 and b"bad.yaml:2" in r.stderr


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


# ---------------------------------------------------------------------------------------------
# streaming, backpressure, slow clients


HUNDRED_MB = 100 * 1024 * 1024
# Under ASan freed memory sits in a quarantine that counts as resident: keep it small where the
# test measures memory (no effect on a normal build).
SMALL_QUARANTINE = {"ASAN_OPTIONS": ":".join(
    x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=1") if x)}


def test_100mb_upload_and_download_streamed_with_bounded_rss(start_edge, pki, upstream, tmp_path):
    e = start_edge("--max-body-size", "200m",
                   upstreams=[f"unix:{upstream}"], env=SMALL_QUARANTINE)
    base = rss_kib(e.proc.pid)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(HUNDRED_MB)
    url = f"https://a.test:{e.https}"
    common = ["--resolve", f"a.test:{e.https}:127.0.0.1", "--cacert", pki["ca"]]
    r = curl(*common, "-T", str(big), "-H", "Expect:", f"{url}/echo")
    got = json.loads(r.stdout)
    assert got["body_len"] == HUNDRED_MB
    assert got["body_sha"] == hashlib.sha256(b"\0" * HUNDRED_MB).hexdigest()
    r = curl(*common, "-o", "/dev/null", "-w", "%{size_download}", f"{url}/big?n={HUNDRED_MB}")
    assert int(r.stdout) == HUNDRED_MB
    r = curl(*common, "-o", "/dev/null", "-w", "%{size_download}",
             f"{url}/big?n={HUNDRED_MB}&chunked")
    assert int(r.stdout) == HUNDRED_MB
    peak = rss_kib(e.proc.pid, "VmHWM")
    assert peak - base < 32 * 1024, (base, peak)


def test_slow_reader_backpressure_keeps_memory_flat(start_edge, pki, upstream):
    """The upstream can send 100 MB at once; a client that reads slowly must not make the edge
    buffer it."""
    e = start_edge(upstreams=[f"unix:{upstream}"],
                   env=SMALL_QUARANTINE)
    base = rss_kib(e.proc.pid)
    s = client_ctx(pki["ca"]).wrap_socket(
        socket.create_connection(("127.0.0.1", e.https), timeout=10), server_hostname="a.test")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(f"GET /big?n={HUNDRED_MB} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
    got = len(s.recv(65536))
    time.sleep(1.0)  # the upstream fills every buffer it can meanwhile
    held = rss_kib(e.proc.pid) - base
    assert held < 16 * 1024, held
    while got < HUNDRED_MB:
        chunk = s.recv(1 << 20)
        assert chunk
        got += len(chunk)
    s.close()
    assert got >= HUNDRED_MB


def sanitized_build():
    """ASan keeps freed memory in its own quarantine and pools: RSS says nothing there."""
    r = subprocess.run(["ldd", EDGE], capture_output=True, text=True)
    return "libasan" in r.stdout


def test_memory_given_back_after_a_burst_of_connections(start_edge, pki):
    """400 TLS connections, each served a request and kept open, then closed: the worker's RSS
    goes back to within 25% of what it was before the burst, within a few seconds (it used to
    keep its peak for good: glibc gives back only the top of the heap)."""
    if sanitized_build():
        pytest.skip("RSS under ASan is the sanitizer's")
    e = start_edge("--max-connections", "1000")
    for _ in range(5):  # the first handshakes set up OpenSSL's caches for good
        https_get(e, pki["ca"], "/")
    base = rss_kib(e.proc.pid)
    held = tls_requests(e, pki["ca"], 400, b"GET /style.css HTTP/1.1\r\nHost: a.test\r\n\r\n",
                        answered=b"body { color: red }")
    peak = rss_kib(e.proc.pid)
    assert peak > base + 3 * 1024, (base, peak)  # the burst did cost memory
    for s in held:
        s.close()
    wait_until(lambda: rss_kib(e.proc.pid) <= base * 1.25, timeout=5,
               what=f"RSS back near {base} KiB from {peak} KiB")


def test_500_slowloris_connections_do_not_block_others(start_edge, pki):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    e = start_edge("--header-timeout", "2s", "--max-connections", "2000")
    slow = []
    for _ in range(250):
        for port in (e.http, e.https):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-a: " if port == e.http
                      else b"\x16\x03\x01\x00")
            slow.append(s)
    t0 = time.monotonic()
    r, body = https_get(e, pki["ca"], "/")
    assert r.status == 200 and time.monotonic() - t0 < 1.0
    resp = raw(e.http, b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert status_of(resp) == 301
    time.sleep(2.5)
    closed = 0
    for s in slow:
        s.settimeout(0.5)
        try:
            closed += s.recv(10) == b""
        except ConnectionResetError:
            closed += 1
        except socket.timeout:
            pass
        s.close()
    assert closed == 500


# ---------------------------------------------------------------------------------------------
# testssl.sh


def test_config_user_drops_privileges(procs, site, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    hp = free_port()
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"""
user: nobody
run_dir: {tmp_path}
state_dir: {tmp_path}
edge:
  workers: 1
  http: ["127.0.0.1:{hp}"]
  https: []
sites:
  - name: a.test
    tls: off
""")
    p = procs.start([EDGE, "--config", str(cfg)])
    wait_until(lambda: port_open(hp) or p.poll() is not None)
    assert p.poll() is None, procs.log(p)
    with open(f"/proc/{p.pid}/status") as f:
        uids = [line.split()[1:] for line in f if line.startswith("Uid:")][0]
    assert set(uids) == {str(65534)}
    resp = raw(hp, b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert status_of(resp) in (404, 502)


def test_sd_notify_ready_reloading_stopping(start_edge, tmp_path):
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(5)
    e = start_edge(env={"NOTIFY_SOCKET": path})
    assert b"READY=1" in srv.recv(4096)
    e.proc.send_signal(signal.SIGHUP)
    assert b"RELOADING=1" in srv.recv(4096)
    assert b"READY=1" in srv.recv(4096)
    e.proc.send_signal(signal.SIGTERM)
    assert b"STOPPING=1" in srv.recv(4096)
    assert e.proc.wait(timeout=5) == 0
    srv.close()


# ---------------------------------------------------------------------------------------------
# races at the edges of a connection's life


APPSERVER = binary("appserver", "appserver")


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


def test_graceful_restart_on_inherited_socket_answers_every_connection(procs, site):
    """As under the supervisor: the listening socket stays open here while edges come and go on
    it. TERM stops accepting; a connection already accepted is answered even when its request
    is still on its way; what waits in the backlog goes to the next edge."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    port = lsock.getsockname()[1]
    move = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execv(sys.argv[2], sys.argv[2:])"

    def start(i):
        args = ["/usr/bin/python3", "-c", move, str(lsock.fileno()), EDGE, "--http", f":{port}",
                "--workers", str(1 + i % 2), "--server-name", "a.test",
                "--static", f"/={site['www']}"]
        p = procs.start(args, name=f"edge{i}", pass_fds=(lsock.fileno(),),
                        env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"})
        wait_until(lambda: "listening" in procs.log(p) or p.poll() is not None, what="edge up")
        assert p.poll() is None, procs.log(p)
        return p
    stop, ok, failed = threading.Event(), [], []

    def client():
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    time.sleep(0.01)  # accepted before its request arrives: TERM's hard case
                    s.sendall(b"GET /digits.txt HTTP/1.1\r\nHost: a.test\r\n"
                              b"Connection: close\r\n\r\n")
                    answer = b""
                    while chunk := s.recv(4096):
                        answer += chunk
                (ok if status_of(answer) == 200 else failed).append(answer[:40])
            except OSError as ex:
                failed.append(repr(ex))
    threads = [threading.Thread(target=client) for _ in range(4)]
    edge = start(0)
    for t in threads:
        t.start()
    for i in range(1, 5):
        time.sleep(0.3)
        edge.send_signal(signal.SIGTERM)
        edge.wait(timeout=10)
        edge = start(i)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert failed == [] and len(ok) > 100, (failed[:3], len(failed), len(ok))


def test_workers_stop_when_the_master_is_killed(start_edge):
    e = start_edge(workers="2")
    workers = set()

    def both_up():
        try:
            with open(f"/proc/{e.proc.pid}/task/{e.proc.pid}/children") as f:
                workers.update(int(x) for x in f.read().split())
        except OSError:
            pass
        return len(workers) == 2
    wait_until(both_up, what="two workers")
    e.proc.kill()
    e.proc.wait()
    try:
        wait_until(lambda: not any(pid_alive(w) for w in workers), timeout=5, what="workers gone")
    finally:
        for w in workers:
            if pid_alive(w):
                os.kill(w, signal.SIGKILL)
    assert not port_open(e.http)
