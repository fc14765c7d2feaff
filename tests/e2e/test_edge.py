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
import socketserver
import ssl
import subprocess
import threading
import time

import pytest

from conftest import binary, free_port, port_open, read_until_close, wait_until

EDGE = binary("edge", "edge")

# ---------------------------------------------------------------------------------------------
# certificates


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw)


def make_leaf(d, ca, name, key_type="ec", days=2, serial=None, start=None, sans=None):
    """A leaf for name signed by ca; returns (cert_path, key_path)."""
    tag = f"{name}-{key_type}-{serial or 'x'}-{start or 'now'}"
    key, csr, crt = d / f"{tag}.key", d / f"{tag}.csr", d / f"{tag}.crt"
    if key_type == "ec":
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-out", str(key))
    else:
        sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
           "-out", str(key))
    sh("openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    ext = d / f"{tag}.ext"
    alt = ",".join(f"DNS:{n}" for n in (sans or [name]))
    ext.write_text(f"subjectAltName={alt}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    cmd = ["openssl", "x509", "-req", "-in", str(csr), "-CA", ca[0], "-CAkey", ca[1],
           "-extfile", str(ext), "-out", str(crt)]
    cmd += ["-set_serial", str(serial or int.from_bytes(os.urandom(8), "big"))]
    if start:
        return future_leaf(d, ca, name, key, crt)
    cmd += ["-days", str(days)]
    sh(*cmd)
    return str(crt), str(key)


def future_leaf(d, ca, name, key, crt):
    """A certificate whose validity starts next year (openssl ca can set a start date)."""
    db = d / "ca.db"
    db.write_text("")
    (d / "ca.serial").write_text("1000\n")
    conf = d / "ca.cnf"
    conf.write_text(f"""[ca]
default_ca = c
[c]
database = {db}
serial = {d / 'ca.serial'}
new_certs_dir = {d}
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
""")
    csr = d / "future.csr"
    sh("openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    year = time.gmtime().tm_year + 1
    sh("openssl", "ca", "-batch", "-config", str(conf), "-cert", ca[0], "-keyfile", ca[1],
       "-in", str(csr), "-out", str(crt), "-startdate", f"{year}0101000000Z",
       "-enddate", f"{year}1231000000Z", "-notext")
    return str(crt), str(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-out", str(ca_key))
    sh("openssl", "req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=hearth test CA",
       "-days", "2", "-out", str(ca_crt))
    ca = (str(ca_crt), str(ca_key))
    p = {"ca": str(ca_crt), "dir": d}
    p["a_ec"] = make_leaf(d, ca, "a.test", "ec", serial=1001)
    p["a_rsa"] = make_leaf(d, ca, "a.test", "rsa", serial=1002)
    p["b_ec"] = make_leaf(d, ca, "b.test", "ec", serial=2001)
    p["a_ec2"] = make_leaf(d, ca, "a.test", "ec", serial=1003)
    p["future"] = make_leaf(d, ca, "a.test", "ec", start="future")
    p["ca_pair"] = ca
    return p


def serial_of(pem_bytes_or_der):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem_bytes_or_der,
                         capture_output=True, check=True).stdout.decode()
    return int(out.strip().split("=")[1], 16)


# ---------------------------------------------------------------------------------------------
# content


@pytest.fixture(scope="module")
def site(tmp_path_factory):
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


# ---------------------------------------------------------------------------------------------
# upstreams


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


def read_head(rf):
    lines = []
    while True:
        line = rf.readline(65537)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.decode("latin-1").rstrip("\r\n"))


def read_body(rf, headers):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        total, h = 0, hashlib.sha256()
        while True:
            size = int(rf.readline().split(b";")[0], 16)
            if size == 0:
                while rf.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return total, h.hexdigest()
            left = size
            while left:
                chunk = rf.read(min(left, 1 << 16))
                h.update(chunk)
                left -= len(chunk)
            total += size
            rf.readline()
    n = int(headers.get("content-length", "0"))
    h, left = hashlib.sha256(), n
    while left:
        chunk = rf.read(min(left, 1 << 16))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    return n, h.hexdigest()


class Upstream(socketserver.StreamRequestHandler):
    """A small HTTP/1.1 application: enough routes to see what the edge forwards."""
    rbufsize = 1 << 16
    connections = []  # one entry per accepted connection: requests served on it

    def handle(self):
        idx = len(Upstream.connections)
        Upstream.connections.append(0)
        while True:
            head = read_head(self.rfile)
            if not head:
                return
            method, target, _ = head[0].split(" ", 2)
            headers, raw = {}, []
            for line in head[1:]:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
                raw.append([k.strip(), v.strip()])
            Upstream.connections[idx] += 1
            self.method = method
            if not self.route(method, target, headers, raw):
                return

    def send(self, status, body=b"", headers=(), close=False):
        h = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"] + list(headers)
        if close:
            h.append("Connection: close")
        if self.method == "HEAD":
            body = b""
        self.wfile.write(("\r\n".join(h) + "\r\n\r\n").encode() + body)
        self.wfile.flush()
        return not close

    def route(self, method, target, headers, raw):
        server = self.server
        if target.startswith("/echo"):
            n, digest = read_body(self.rfile, headers)
            body = json.dumps({"method": method, "target": target, "headers": raw,
                               "body_len": n, "body_sha": digest, "who": server.name}).encode()
            return self.send(200, body, ["Content-Type: application/json",
                                         "Connection: keep-alive, X-Secret-Hop",
                                         "X-Secret-Hop: 1", "Keep-Alive: timeout=5",
                                         "X-Kept: yes"])
        if target.startswith("/big"):
            n = int(re.search(r"n=(\d+)", target).group(1))
            chunked = "chunked" in target
            hdr = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {n}"
            self.wfile.write(f"HTTP/1.1 200 OK\r\n{hdr}\r\n\r\n".encode())
            block = b"x" * (1 << 20)
            left = n
            while left:
                piece = block[:min(left, len(block))]
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    self.wfile.write(piece)
                left -= len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return True
        if target.startswith("/slow"):
            time.sleep(float(re.search(r"t=([\d.]+)", target).group(1)))
            return self.send(200, b"slow done")
        if target.startswith("/ws"):
            key = headers.get("sec-websocket-key", "")
            acc = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Accept: {acc}\r\n\r\n").encode())
            self.wfile.flush()
            while True:
                frame = ws_read_frame(self.rfile)
                if frame is None or frame[0] == 8:
                    return False
                self.wfile.write(ws_frame(frame[0], frame[1], mask=False))
                self.wfile.flush()
        return self.send(404, b"no route")


def ws_frame(opcode, payload, mask=True):
    head = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def ws_read_frame(rf):
    h = rf.read(2)
    if len(h) < 2:
        return None
    opcode, n, masked = h[0] & 0x0F, h[1] & 0x7F, h[1] & 0x80
    if n == 126:
        n = int.from_bytes(rf.read(2), "big")
    elif n == 127:
        n = int.from_bytes(rf.read(8), "big")
    key = rf.read(4) if masked else None
    data = rf.read(n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return opcode, data


def start_upstream(path, name="up"):
    srv = UnixHTTPServer(str(path), Upstream)
    srv.name = name
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv


class TcpHTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def upstream(tmp_path):
    Upstream.connections = []
    path = tmp_path / "app.sock"
    srv = start_upstream(path)
    yield str(path)
    srv.shutdown()
    srv.server_close()


# ---------------------------------------------------------------------------------------------
# the edge


class Edge:
    def __init__(self, proc, http_port, https_port, log):
        self.proc, self.http, self.https, self.log_path = proc, http_port, https_port, log

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def start_edge(procs, pki, site, *extra, https=True, workers="1", name="edge", sites=None,
               env=None):
    hp, sp = free_port(), free_port()
    args = [EDGE, "--http", f"127.0.0.1:{hp}", "--workers", workers]
    if https:
        args += ["--https", f"127.0.0.1:{sp}"]
    if sites is None:
        sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
                 "--static", f"/static/={site['www']}", "--static", f"/={site['www']}"]
    args += sites + ["--acme-webroot", site["acme"]] + list(extra)
    p = procs.start(args, name=name, env=env)
    # the listeners are bound one after the other: wait for each one the test will use
    ports = [hp, sp] if https else [hp]
    wait_until(lambda: all(port_open(x) for x in ports) or p.poll() is not None,
               what="edge listening")
    assert p.poll() is None, procs.log(p)
    return Edge(p, hp, sp, p.log_path)


def client_ctx(pki, **kw):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def https_get(edge, pki, path, host="a.test", headers=None, method="GET", body=None):
    conn = http.client.HTTPSConnection("127.0.0.1", edge.https, context=client_ctx(pki),
                                       timeout=10)
    conn._server_hostname = host  # SNI and certificate check against the site name
    conn.sock = None
    sock = socket.create_connection(("127.0.0.1", edge.https), timeout=10)
    conn.sock = client_ctx(pki).wrap_socket(sock, server_hostname=host)
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


def tls_requests(edge, pki, n, request, answered=None):
    """n TLS connections that each sent request (and, with answered, got an answer holding
    it), left open."""
    tls = client_ctx(pki)
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


# ---------------------------------------------------------------------------------------------
# plain HTTP: redirects and ACME challenges


def test_redirect_get_and_head_301_with_path_and_query(procs, pki, site):
    e = start_edge(procs, pki, site)
    for method in ("GET", "HEAD"):
        conn = http.client.HTTPConnection("127.0.0.1", e.http, timeout=5)
        conn.request(method, "/some/path?x=1&y=2", headers={"Host": "a.test"})
        r = conn.getresponse()
        r.read()
        assert r.status == 301
        assert r.getheader("Location") == f"https://a.test:{e.https}/some/path?x=1&y=2"


def test_redirect_other_methods_308_and_host_header_ignored(procs, pki, site):
    e = start_edge(procs, pki, site)
    resp = raw(e.http, b"POST /form?q=1 HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 3"
                       b"\r\n\r\nabc")
    assert status_of(resp) == 308
    assert f"Location: https://a.test:{e.https}/form?q=1\r\n".encode() in resp
    assert b"evil" not in resp


def test_acme_challenge_served_and_token_charset_checked(procs, pki, site):
    e = start_edge(procs, pki, site)
    r = curl(f"http://127.0.0.1:{e.http}/.well-known/acme-challenge/tok_EN-123", "-i")
    assert b" 200 " in r.stdout.split(b"\r\n")[0]
    assert r.stdout.endswith(b"tok_EN-123.thumbprint")
    for bad in [b"/.well-known/acme-challenge/missing", b"/.well-known/acme-challenge/..%2f..%2foutside.txt",
                b"/.well-known/acme-challenge/../../outside.txt", b"/.well-known/acme-challenge/a.b",
                b"/.well-known/acme-challenge/"]:
        resp = raw(e.http, b"GET " + bad + b" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        assert status_of(resp) in (404, 400, 301), (bad, resp)
        assert b"NOT-A-CHALLENGE" not in resp


# ---------------------------------------------------------------------------------------------
# static files


def test_static_index_mime_and_directories(procs, pki, site):
    e = start_edge(procs, pki, site)
    r, body = https_get(e, pki, "/")
    assert r.status == 200 and body == b"<h1>home</h1>\n"
    assert r.getheader("Content-Type") == "text/html; charset=utf-8"
    for path, mime in [("/style.css", "text/css"), ("/app.js", "text/javascript"),
                       ("/data.json", "application/json"), ("/logo.png", "image/png"),
                       ("/static/digits.txt", "text/plain")]:
        r, _ = https_get(e, pki, path)
        assert r.status == 200 and r.getheader("Content-Type").startswith(mime), path
    r, body = https_get(e, pki, "/sub/")
    assert body == b"<h1>sub</h1>\n"
    r, _ = https_get(e, pki, "/sub?a=1")
    assert r.status == 301 and r.getheader("Location") == "/sub/?a=1"
    r, _ = https_get(e, pki, "/nope.txt")
    assert r.status == 404
    r, body = https_get(e, pki, "/space%20name.txt")
    assert r.status == 200 and body == b"spaced\n"
    r, body = https_get(e, pki, "/inside-link.css")
    assert r.status == 200
    r, _ = https_get(e, pki, "/style.css", method="POST", body=b"x")
    assert r.status == 405


def test_static_etag_last_modified_304(procs, pki, site):
    e = start_edge(procs, pki, site)
    r, _ = https_get(e, pki, "/style.css")
    etag, lm = r.getheader("ETag"), r.getheader("Last-Modified")
    assert etag and lm
    r, body = https_get(e, pki, "/style.css", headers={"If-None-Match": etag})
    assert r.status == 304 and body == b"" and r.getheader("ETag") == etag
    r, _ = https_get(e, pki, "/style.css", headers={"If-None-Match": '"other"'})
    assert r.status == 200
    r, _ = https_get(e, pki, "/style.css", headers={"If-Modified-Since": lm})
    assert r.status == 304
    r, _ = https_get(e, pki, "/style.css",
                     headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status == 200


def test_static_ranges_206_and_416(procs, pki, site):
    e = start_edge(procs, pki, site)
    digits = b"0123456789" * 10
    r, body = https_get(e, pki, "/digits.txt", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and body == digits[10:20]
    assert r.getheader("Content-Range") == "bytes 10-19/100"
    r, body = https_get(e, pki, "/digits.txt", headers={"Range": "bytes=-5"})
    assert r.status == 206 and body == digits[-5:]
    r, body = https_get(e, pki, "/digits.txt", headers={"Range": "bytes=95-"})
    assert r.status == 206 and body == digits[95:]
    r, body = https_get(e, pki, "/digits.txt", headers={"Range": "bytes=90-1000"})
    assert r.status == 206 and body == digits[90:]
    r, _ = https_get(e, pki, "/digits.txt", headers={"Range": "bytes=100-"})
    assert r.status == 416 and r.getheader("Content-Range") == "bytes */100"
    r, body = https_get(e, pki, "/digits.txt", headers={"Range": "bytes=0-1,5-6"})
    assert r.status == 200 and body == digits
    # plain HTTP is all redirect, so sendfile ranges are checked on the plain static path below


def test_static_precompressed_siblings_and_vary(procs, pki, site):
    e = start_edge(procs, pki, site)
    r, body = https_get(e, pki, "/page.html", headers={"Accept-Encoding": "gzip, br"})
    assert body == b"BR-VARIANT" and r.getheader("Content-Encoding") == "br"
    assert r.getheader("Vary") == "Accept-Encoding"
    r, body = https_get(e, pki, "/page.html", headers={"Accept-Encoding": "gzip"})
    assert body == b"GZ-VARIANT" and r.getheader("Content-Encoding") == "gzip"
    r, body = https_get(e, pki, "/page.html", headers={"Accept-Encoding": "br;q=0, gzip;q=0"})
    assert body.startswith(b"plain page") and r.getheader("Content-Encoding") is None
    assert r.getheader("Vary") == "Accept-Encoding"
    r, body = https_get(e, pki, "/page.html")
    assert body.startswith(b"plain page")


def test_static_cache_control(procs, pki, site):
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--static", f"/assets/={site['www']}", "--cache-control", "public, max-age=3600"]
    e = start_edge(procs, pki, site, sites=sites)
    r, _ = https_get(e, pki, "/assets/style.css")
    assert r.status == 200 and r.getheader("Cache-Control") == "public, max-age=3600"


TRAVERSALS = [
    b"/../secret.txt", b"/%2e%2e/secret.txt", b"/%2E%2E/secret.txt", b"/..%2fsecret.txt",
    b"/%2e%2e%2fsecret.txt", b"/sub/../../secret.txt", b"/sub/%2e%2e/%2e%2e/secret.txt",
    b"/..\\secret.txt", b"/%5c..%5csecret.txt", b"/sub%2f..%2f..%2fsecret.txt",
    b"/escape.txt", b"/style.css%00.png", b"/%00", b"/./style.css/../../secret.txt",
    b"/static/../../secret.txt", b"//../secret.txt", b"/%252e%252e/secret.txt",
    b"/..;/secret.txt", b"/sub/..", b"/%c0%ae%c0%ae/secret.txt",
]


def test_static_traversal_attempts_refused(procs, pki, site):
    e = start_edge(procs, pki, site)
    tls = client_ctx(pki)
    for t in TRAVERSALS:
        resp = raw(e.https, b"GET " + t + b" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                   tls=tls)
        assert status_of(resp) in (400, 403, 404), (t, resp[:80])
        assert b"TOP-SECRET" not in resp, t
    assert e.proc.poll() is None


# ---------------------------------------------------------------------------------------------
# TLS


def s_client(port, *args, servername="a.test", data=b"", timeout=10):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", servername]
    cmd += list(args)
    return subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)


def test_tls_old_versions_refused_new_ones_work(procs, pki, site):
    e = start_edge(procs, pki, site)
    for flag in ("-tls1", "-tls1_1"):
        r = s_client(e.https, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
        assert b"Cipher is (NONE)" in r.stdout or r.returncode != 0, flag
    for flag, name in (("-tls1_2", b"TLSv1.2"), ("-tls1_3", b"TLSv1.3")):
        r = s_client(e.https, flag, "-CAfile", pki["ca"], "-verify_return_error")
        assert r.returncode == 0 and name in r.stdout, r.stdout[-500:]


def test_tls_sni_picks_site_and_ecdsa_rsa_side_by_side(procs, pki, site):
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--cert", pki["a_rsa"][0], "--key", pki["a_rsa"][1], "--static", f"/={site['www']}",
             "--server-name", "b.test", "--cert", pki["b_ec"][0], "--key", pki["b_ec"][1],
             "--static", f"/={site['www']}/sub"]
    e = start_edge(procs, pki, site, sites=sites)
    for name, serial in (("a.test", 1001), ("b.test", 2001)):
        with socket.create_connection(("127.0.0.1", e.https)) as s:
            with client_ctx(pki).wrap_socket(s, server_hostname=name) as t:
                assert serial_of(ssl.DER_cert_to_PEM_cert(t.getpeercert(True)).encode()) == serial
    # a client that only takes RSA gets the RSA certificate of the same site
    r = s_client(e.https, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-showcerts")
    assert serial_of(r.stdout) == 1002
    r, body = https_get(e, pki, "/", host="b.test")
    assert body == b"<h1>sub</h1>\n"


def test_tls_alpn_h2_then_http11(procs, pki, site):
    """h2 when the client offers it (RFC 9113 3.2), http/1.1 when that is all it offers."""
    e = start_edge(procs, pki, site)
    for offer, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        ctx = client_ctx(pki)
        ctx.set_alpn_protocols(offer)
        with socket.create_connection(("127.0.0.1", e.https)) as s:
            with ctx.wrap_socket(s, server_hostname="a.test") as t:
                assert t.selected_alpn_protocol() == chosen


def test_tls_session_resumption_across_workers(procs, pki, site, tmp_path):
    e = start_edge(procs, pki, site, workers="2")
    sess = tmp_path / "sess.pem"
    # A request makes s_client stay until the answer, after the TLS 1.3 tickets arrived.
    req = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    for proto in ("-tls1_2", "-tls1_3"):
        r = s_client(e.https, proto, "-ign_eof", "-sess_out", str(sess), data=req)
        assert r.returncode == 0
        reused = 0
        for _ in range(6):
            r = s_client(e.https, proto, "-ign_eof", "-sess_in", str(sess), data=req)
            reused += b"Reused, TLSv1" in r.stdout
        assert reused == 6, proto
    # TLS 1.3 tickets are single-use: a resumed handshake must hand out a fresh one, or every
    # other connection of a client that resumes in a chain is a full handshake.
    for i in range(4):
        nxt = tmp_path / f"chain{i}.pem"
        r = s_client(e.https, "-tls1_3", "-ign_eof", "-sess_in", str(sess), "-sess_out", str(nxt),
                     data=req)
        assert b"Reused, TLSv1.3" in r.stdout, i
        sess = nxt


# ---------------------------------------------------------------------------------------------
# limits and timeouts


def test_header_timeout_closes_slow_client(procs, pki, site):
    e = start_edge(procs, pki, site, "--header-timeout", "1s")
    s = socket.create_connection(("127.0.0.1", e.http), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert 0.8 < time.monotonic() - t0 < 3


def test_keepalive_timeout_closes_idle_connection(procs, pki, site):
    e = start_edge(procs, pki, site, "--keepalive-timeout", "1s")
    s = socket.create_connection(("127.0.0.1", e.http), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    time.sleep(0.2)
    first = s.recv(4096)
    assert status_of(first) == 301
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert 0.6 < time.monotonic() - t0 < 3


def test_keepalive_and_pipelining(procs, pki, site):
    e = start_edge(procs, pki, site)
    req = b"GET /style.css HTTP/1.1\r\nHost: a.test\r\n\r\n"
    resp = raw(e.https, req * 3 + b"GET /app.js HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
               tls=client_ctx(pki))
    assert resp.count(b"HTTP/1.1 200 OK") == 4
    assert resp.endswith(b"console.log(1)\n")


def test_body_too_large_413_and_header_too_large_431(procs, pki, site, upstream):
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--upstream", f"unix:{upstream}"]
    e = start_edge(procs, pki, site, "--max-body-size", "1k", "--max-header-size", "2k",
                   sites=sites)
    tls = client_ctx(pki)
    resp = raw(e.https, b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5000\r\n\r\n",
               tls=tls)
    assert status_of(resp) == 413
    resp = raw(e.https, b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                        b"\r\n800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\n", tls=tls)
    assert status_of(resp) == 413
    resp = raw(e.https, b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n",
               tls=tls)
    assert status_of(resp) == 431
    r, body = https_get(e, pki, "/echo", method="POST", body=b"z" * 1000)
    assert r.status == 200 and json.loads(body)["body_len"] == 1000


def test_max_connections_sheds_idle_then_oldest_head_and_waits_only_when_all_are_busy(
        procs, pki, site, upstream):
    """A full worker makes room for a newcomer by closing an idle keep-alive connection, else the
    one that has waited longest for its request head; only while every slot serves a request does
    the newcomer wait in the backlog (it used to wait there whatever the slots were doing)."""
    e = start_edge(procs, pki, site, "--max-connections", "3",
                   sites=proxy_sites(pki, f"unix:{upstream}"))

    def connect():
        return socket.create_connection(("127.0.0.1", e.http), timeout=5)

    def still_open(s):
        s.settimeout(0.2)
        try:
            return s.recv(10) != b""
        except socket.timeout:
            return True

    def newcomer_status():
        s = connect()
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        return status_of(read_until_close(s))

    heads = [connect(), connect()]
    time.sleep(0.1)
    idle = connect()
    idle.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert status_of(idle.recv(4096)) == 301
    assert newcomer_status() == 301
    assert not still_open(idle) and still_open(heads[0]) and still_open(heads[1])
    heads.append(connect())
    time.sleep(0.1)
    assert newcomer_status() == 301
    assert not still_open(heads[0]) and still_open(heads[1]) and still_open(heads[2])
    for h in heads:
        h.close()

    busy = tls_requests(e, pki, 3, b"GET /slow?t=1.5 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    time.sleep(0.3)
    s = connect()  # sits in the backlog while every slot serves a request
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    s.settimeout(0.5)
    with pytest.raises(socket.timeout):
        s.recv(100)
    s.settimeout(5)
    assert status_of(s.recv(4096)) == 301  # a slow request ended: its connection made room
    for b in busy:
        b.close()


def test_slowloris_crowd_shed_and_summarised_while_a_normal_client_is_served(procs, pki, site):
    """300 connections that never finish their head, against 100 slots: each newcomer takes the
    slot of the oldest of them, so a normal client is served at once; while the worker is under
    pressure (75 of its 100 slots) the rest are closed at the short pressure_header_timeout, not
    the 60 s header_timeout (once enough have gone, the pressure and the short timeout end: the
    last few may keep the normal one); one log line for the interval counts all of it."""
    e = start_edge(procs, pki, site, "--max-connections", "100", "--pressure-header-timeout",
                   "1s", "--pressure-log-interval", "3s")
    slow = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", e.http), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-a: ")
        slow.append(s)
    t0 = time.monotonic()
    for _ in range(5):
        r, body = https_get(e, pki, "/")
        assert r.status == 200 and body == b"<h1>home</h1>\n"
    assert time.monotonic() - t0 < 2.0

    def closed(s):
        try:
            return s.recv(10) == b""
        except ConnectionResetError:
            return True

    for s in slow[:200]:  # the oldest made room for the newest at once
        assert closed(s)
    for s in slow[200:]:
        s.settimeout(0.1)
    deadline = time.monotonic() + 3  # well past the 1 s timeout and its 250 ms sweep
    newest_closed = 0
    for s in slow[200:]:  # and the newest went at the short timeout, at least down to 75 open
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            newest_closed += closed(s)
        except TimeoutError:
            pass
    assert newest_closed >= 25, newest_closed
    slots_lines = lambda: [x for x in procs.log(e.proc).splitlines() if "connection slots" in x]
    wait_until(lambda: slots_lines(), timeout=6, what="the slots summary")
    time.sleep(0.5)
    lines = slots_lines()
    assert len(lines) == 1, lines
    m = re.search(r"shed (\d+) idle keep-alive and (\d+) unfinished request heads.* closed "
                  r"(\d+) heads at pressure_header_timeout", lines[0])
    assert m and m.group(1) == "0", lines[0]
    assert 200 <= int(m.group(2)) <= 205 and int(m.group(3)) >= 25, lines[0]
    for s in slow:
        s.close()


SMUGGLING = [
    b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\n folded: x\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a.test\n\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
    b"GET /\x7f HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: a.test/../x\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: a.test:80:80\r\n\r\n",
    b"GET /echo HTTP/1.0\r\nHost: a.test@b\r\n\r\n",
]


def test_hostile_requests_refused_and_process_survives(procs, pki, site, upstream):
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--upstream", f"unix:{upstream}"]
    e = start_edge(procs, pki, site, "--header-timeout", "1s", sites=sites)
    tls = client_ctx(pki)
    for bad in SMUGGLING:
        for port, t in ((e.http, None), (e.https, tls)):
            resp = raw(port, bad, tls=t)
            # the plain listener never reads a body: a broken one there only meets a redirect
            ok = (400, 308) if port == e.http and b"\r\n-1\r\n" in bad else (400,)
            assert resp == b"" or status_of(resp) in ok, (bad, resp[:100])
    # empty lines before a request line are skipped, up to the head limit (16 KiB)
    for garbage in (os.urandom(4000), b"\x16\x03\x03\x00\x05hello", b"\r\n" * 9000):
        raw(e.https, garbage)
        raw(e.http, garbage)
    assert e.proc.poll() is None
    r, _ = https_get(e, pki, "/echo")
    assert r.status == 200


def test_bytes_that_cannot_start_a_request_are_refused_at_once(procs, pki, site):
    """300 random bytes without a line end used to hold a connection for the header timeout;
    nginx answers 400 at the first byte that cannot begin a request line, and so does the edge.
    A CR or LF first is still waited on: a request line may follow an empty line."""
    import random
    e = start_edge(procs, pki, site)
    rnd = random.Random(13)
    garbage = bytes(b for b in rnd.randbytes(600) if b not in b"\r\n")[:300]
    tls = client_ctx(pki)
    for port, t in ((e.http, None), (e.https, tls)):
        t0 = time.monotonic()
        resp = raw(port, garbage, tls=t)
        assert status_of(resp) == 400 and time.monotonic() - t0 < 2, resp[:100]
    s = socket.create_connection(("127.0.0.1", e.http), timeout=0.5)
    s.sendall(b"\r")
    with pytest.raises(socket.timeout):
        s.recv(100)
    s.close()


def statuses(resp):
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", resp)]


def test_http10_without_host_empty_lines_and_400_closes(procs, pki, site, upstream):
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{upstream}"))
    tls = client_ctx(pki)
    # HTTP/1.0 needs no Host; the request goes upstream as HTTP/1.1, which does
    resp = raw(e.https, b"GET /echo HTTP/1.0\r\n\r\n", tls=tls)
    assert status_of(resp) == 200, resp[:200]
    got = json.loads(resp.partition(b"\r\n\r\n")[2])
    assert [v for k, v in got["headers"] if k.lower() == "host"] == ["a.test"]
    # an empty line before the request line is ignored (RFC 9112 2.2), as after a POST body
    resp = raw(e.https, b"\r\nGET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
               tls=tls)
    assert statuses(resp) == [200], resp[:200]
    resp = raw(e.https, b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\n\r\nx\r\n"
               b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", tls=tls)
    assert statuses(resp) == [200, 200], resp[:400]
    # a 400 from any handler ends the connection: the request after it is never read
    resp = raw(e.https, b"GET /static/%zz HTTP/1.1\r\nHost: a.test\r\n\r\n"
               b"GET /echo HTTP/1.1\r\nHost: a.test\r\n\r\n", tls=tls)
    assert statuses(resp) == [400] and b"\r\nConnection: close\r\n" in resp, resp[:400]


# ---------------------------------------------------------------------------------------------
# reverse proxy


def proxy_sites(pki, *upstreams):
    s = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
         "--static", "/static/=/"]
    for u in upstreams:
        s += ["--upstream", u]
    return s


def test_proxy_forwarded_headers_and_hop_by_hop(procs, pki, site, upstream):
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{upstream}"))
    r, body = https_get(e, pki, "/echo?q=1", headers={
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


def test_proxy_keepalive_pool_reuses_upstream_connections(procs, pki, site, upstream):
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{upstream}"))
    for _ in range(10):
        r, _ = https_get(e, pki, "/echo")
        assert r.status == 200
    assert sum(Upstream.connections) == 10
    assert len(Upstream.connections) <= 2, Upstream.connections


def test_proxy_chunked_request_body_and_head(procs, pki, site, upstream):
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{upstream}"))

    def gen():
        for i in range(50):
            yield b"%d-" % i * 100
    conn = http.client.HTTPSConnection("127.0.0.1", e.https, context=client_ctx(pki))
    sock = socket.create_connection(("127.0.0.1", e.https))
    conn.sock = client_ctx(pki).wrap_socket(sock, server_hostname="a.test")
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


def test_proxy_502_when_upstream_is_down(procs, pki, site, tmp_path):
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{tmp_path}/none.sock"))
    for _ in range(20):
        r, body = https_get(e, pki, "/anything")
        assert r.status == 502
    # every request fails the same way: the log says so once, not twenty times
    assert e.log().count("skipping it for") == 1, e.log()


def test_proxy_504_on_upstream_timeout(procs, pki, site, upstream):
    e = start_edge(procs, pki, site, "--proxy-read-timeout", "1s",
                   sites=proxy_sites(pki, f"unix:{upstream}"))
    t0 = time.monotonic()
    r, _ = https_get(e, pki, "/slow?t=3")
    assert r.status == 504 and time.monotonic() - t0 < 2.5


def garbage_upstream(path, reply):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(16)

    def run():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(65536)
            if reply is not None:
                c.sendall(reply)
            c.close()
    threading.Thread(target=run, daemon=True).start()
    return srv


def test_proxy_502_on_garbage_or_early_close(procs, pki, site, tmp_path):
    for i, reply in enumerate([b"NOT HTTP AT ALL\r\n\r\n", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n"]):
        path = str(tmp_path / f"g{i}.sock")
        srv = garbage_upstream(path, reply)
        e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{path}"), name=f"edge{i}")
        for _ in range(5):
            r, _ = https_get(e, pki, "/x")
            assert r.status == 502, reply
        # a broken application breaks every answer: the log says so once, not each time
        assert len(re.findall(r"upstream unix:\S+: (bad response|closed)", e.log())) == 1, e.log()
        srv.close()


def test_proxy_round_robin_skips_failed_upstream(procs, pki, site, tmp_path):
    Upstream.connections = []
    a = start_upstream(tmp_path / "a.sock", "A")
    b = start_upstream(tmp_path / "b.sock", "B")
    dead = f"unix:{tmp_path}/dead.sock"
    e = start_edge(procs, pki, site, "--upstream-fail-timeout", "30s",
                   sites=proxy_sites(pki, f"unix:{tmp_path}/a.sock", dead,
                                     f"unix:{tmp_path}/b.sock"))
    who = []
    for _ in range(8):
        r, body = https_get(e, pki, "/echo")
        assert r.status == 200
        who.append(json.loads(body)["who"])
    assert set(who) == {"A", "B"}
    assert e.log().count("dead.sock failed") == 1
    a.shutdown(), b.shutdown(), a.server_close(), b.server_close()


def test_proxy_tcp_upstream(procs, pki, site):
    srv = TcpHTTPServer(("127.0.0.1", 0), Upstream)
    srv.name = "tcp"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"127.0.0.1:{srv.server_address[1]}"))
    r, body = https_get(e, pki, "/echo")
    assert r.status == 200 and json.loads(body)["who"] == "tcp"
    srv.shutdown()
    srv.server_close()


def test_websocket_echo_through_tunnel(procs, pki, site, upstream):
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{upstream}"))
    s = client_ctx(pki).wrap_socket(socket.create_connection(("127.0.0.1", e.https), timeout=5),
                                    server_hostname="a.test")
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


def test_ipv6_listener(procs, pki, site):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    e = start_edge(procs, pki, site, "--http", f"[::1]:{port}")
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
    e = Edge(p, hp, sp, p.log_path)
    wait_until(lambda: "listening" in e.log() or p.poll() is not None)
    assert status_of(raw(hp, b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")) == 301
    r, body = https_get(e, pki, "/")
    assert r.status == 200 and body == b"<h1>home</h1>\n"


# ---------------------------------------------------------------------------------------------
# lifecycle: reload, stop, reopen


def handshake_serial(port, host="a.test", ctx=None):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with (ctx or ssl.create_default_context()).wrap_socket(s, server_hostname=host) as t:
            return serial_of(ssl.DER_cert_to_PEM_cert(t.getpeercert(True)).encode())


def test_sighup_reload_under_load_and_broken_cert_refused(procs, pki, site, tmp_path):
    import shutil
    crt, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki["a_ec"][0], crt)
    shutil.copy(pki["a_ec"][1], key)
    sites = ["--server-name", "a.test", "--cert", str(crt), "--key", str(key),
             "--static", f"/={site['www']}"]
    e = start_edge(procs, pki, site, sites=sites, workers="2")
    ctx = client_ctx(pki)
    assert handshake_serial(e.https, ctx=ctx) == 1001
    stop, results = threading.Event(), {"ok": 0, "fail": 0, "serials": set()}
    # a long-lived connection that must carry on across reloads
    keep = ctx.wrap_socket(socket.create_connection(("127.0.0.1", e.https)), server_hostname="a.test")

    def loop():
        while not stop.is_set():
            try:
                results["serials"].add(handshake_serial(e.https, ctx=ctx))
                results["ok"] += 1
            except Exception as ex:  # noqa: BLE001 - any failure counts
                results["fail"] += 1
                results["err"] = repr(ex)
    t = threading.Thread(target=loop)
    t.start()
    time.sleep(0.3)
    shutil.copy(pki["a_ec2"][0], str(crt) + ".new")
    shutil.copy(pki["a_ec2"][1], str(key) + ".new")
    os.rename(str(key) + ".new", key)
    os.rename(str(crt) + ".new", crt)
    e.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: 1003 in results["serials"], timeout=5, what="new serial")
    time.sleep(0.3)
    # broken: the key does not match; then not yet valid. The running cert keeps serving.
    shutil.copy(pki["b_ec"][1], key)
    e.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    shutil.copy(pki["future"][0], crt)
    shutil.copy(pki["future"][1], key)
    e.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    os.chmod(crt, 0)
    shutil.copy(pki["a_ec"][1], key)
    os.unlink(crt)
    e.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    stop.set()
    t.join()
    assert results["fail"] == 0, results
    assert results["ok"] > 10
    assert handshake_serial(e.https, ctx=ctx) == 1003
    log = e.log()
    assert "does not match" in log and "not valid yet" in log and "reload refused" in log
    keep.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert keep.recv(100).startswith(b"HTTP/1.1 200")
    keep.close()


def test_sigterm_finishes_inflight_then_exits(procs, pki, site, upstream):
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{upstream}"))
    idle = socket.create_connection(("127.0.0.1", e.http))
    result = {}

    def slow():
        result["r"] = https_get(e, pki, "/slow?t=1")
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


def test_access_log_combined_and_usr1_reopen(procs, pki, site, tmp_path):
    log = tmp_path / "access.log"
    e = start_edge(procs, pki, site, "--access-log", str(log))
    https_get(e, pki, "/style.css", headers={"User-Agent": 'agent "quoted"', "Referer": "http://r/"})
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
    https_get(e, pki, "/app.js")
    wait_until(lambda: log.exists() and "app.js" in log.read_text())
    assert "app.js" not in open(str(log) + ".1").read()


def test_access_log_json_and_hsts(procs, pki, site, tmp_path):
    log = tmp_path / "access.json"
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--static", f"/={site['www']}", "--hsts", "180d"]
    e = start_edge(procs, pki, site, "--access-log", str(log), "--access-log-format", "json",
                   sites=sites)
    r, _ = https_get(e, pki, "/data.json")
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
    e = Edge(p, hp, sp, p.log_path)
    r, _ = https_get(e, pki, "/assets/style.css")
    assert r.status == 200 and r.getheader("Cache-Control") == "max-age=60"
    assert r.getheader("Strict-Transport-Security").startswith("max-age=86400")
    r, body = https_get(e, pki, "/echo")
    assert json.loads(body)["target"] == "/echo"
    r, body = https_get(e, pki, "/", host="b.test")
    assert body == b"<h1>sub</h1>\n"
    assert handshake_serial(sp, "b.test", client_ctx(pki)) == 2001
    bad = tmp_path / "bad.yaml"
    bad.write_text("edge:\n  nonsense: 1\n")
    r = subprocess.run([EDGE, "--config", str(bad)], capture_output=True)
    assert r.returncode == 2 and b"bad.yaml:2" in r.stderr


def store_version(certs, name, version, chain, key):
    """Lay out a certificate the way certd does: CERT_DIR/.archive/NAME/N, then switch the
    CERT_DIR/NAME symlink to it with one rename()."""
    import shutil
    d = certs / ".archive" / name / str(version)
    d.mkdir(parents=True)
    shutil.copy(chain, d / "fullchain.pem")
    shutil.copy(key, d / "privkey.pem")
    tmp = certs / f".{name}.tmp"
    os.symlink(f".archive/{name}/{version}", tmp)
    os.rename(tmp, certs / name)


def handshake_fails(port, host, ctx):
    try:
        handshake_serial(port, host, ctx)
    except (ssl.SSLError, ConnectionError):
        return True
    return False


def test_managed_certificate_pending_then_loaded_on_sighup(procs, pki, site, tmp_path, upstream):
    """tls: acme without a certificate in certd's store: the edge starts anyway, answers
    challenges and a 503 on plain HTTP, fails handshakes for the name at once, and takes the
    certificate on SIGHUP once certd has written it; a broken later version keeps the old one."""
    hp, sp = free_port(), free_port()
    certs = tmp_path / "state" / "certs"
    certs.mkdir(parents=True)
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"""
state_dir: {tmp_path}/state
edge:
  workers: 1
  http: ["127.0.0.1:{hp}"]
  https: ["127.0.0.1:{sp}"]
certd:
  webroot: {site['acme']}
sites:
  - name: a.test
    tls: acme
    static: {{prefix: /, root: {site['www']}}}
    upstreams: ["unix:{upstream}"]
""")
    p = procs.start([EDGE, "--config", str(cfg)])
    wait_until(lambda: port_open(sp) or p.poll() is not None)
    assert p.poll() is None, procs.log(p)
    resp = raw(hp, b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert status_of(resp) == 503 and re.search(rb"\r\nRetry-After: \d+\r\n", resp), resp
    # challenges for any Host: certd may be issuing a name no site has yet
    for host in (b"a.test", b"new.example.org"):
        resp = raw(hp, b"GET /.well-known/acme-challenge/tok_EN-123 HTTP/1.1\r\nHost: " + host +
                   b"\r\nConnection: close\r\n\r\n")
        assert status_of(resp) == 200 and resp.endswith(b"tok_EN-123.thumbprint"), resp
    t0 = time.monotonic()
    assert handshake_fails(sp, "a.test", client_ctx(pki))
    assert handshake_fails(sp, "other.test", client_ctx(pki))
    assert time.monotonic() - t0 < 3
    store_version(certs, "a.test", 1, *pki["a_ec"])
    p.send_signal(signal.SIGHUP)
    wait_until(lambda: not handshake_fails(sp, "a.test", client_ctx(pki)), timeout=5,
               what="the certificate after SIGHUP")
    assert handshake_serial(sp, "a.test", client_ctx(pki)) == 1001
    resp = raw(hp, b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert status_of(resp) == 301 and f"https://a.test:{sp}/x".encode() in resp
    store_version(certs, "a.test", 2, *pki["a_ec2"])
    p.send_signal(signal.SIGHUP)
    wait_until(lambda: handshake_serial(sp, "a.test", client_ctx(pki)) == 1003, timeout=5)
    # a version whose key is not the certificate's: logged, the running one stays
    store_version(certs, "a.test", 3, pki["a_ec"][0], pki["b_ec"][1])
    p.send_signal(signal.SIGHUP)
    wait_until(lambda: "keeping the running certificate" in procs.log(p), timeout=5)
    assert handshake_serial(sp, "a.test", client_ctx(pki)) == 1003
    assert p.poll() is None


def test_root_static_prefix_falls_through_to_upstream(procs, pki, site, tmp_path, upstream):
    """static prefix "/" with upstreams: files where they exist, the application for the rest
    (nginx's try_files $uri @app), so a site's pages and its /api/ both work."""
    e = start_edge(procs, pki, site, sites=[
        "--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
        "--static", f"/={site['www']}", "--upstream", f"unix:{upstream}"])
    r, body = https_get(e, pki, "/")
    assert r.status == 200 and body == b"<h1>home</h1>\n"
    r, body = https_get(e, pki, "/style.css")
    assert r.status == 200 and body.startswith(b"body")
    r, body = https_get(e, pki, "/echo/api/notes?x=1")
    assert r.status == 200 and json.loads(body)["target"] == "/echo/api/notes?x=1"
    r, body = https_get(e, pki, "/echo", method="POST", body=b"abc")
    assert r.status == 200 and json.loads(body)["method"] == "POST"
    # refused paths are answered by the edge, never handed on
    r, body = https_get(e, pki, "/escape.txt")
    assert r.status in (403, 404) and b"TOP-SECRET" not in body
    r, body = https_get(e, pki, "/%2e%2e/secret.txt")
    assert r.status in (400, 404) and b"TOP-SECRET" not in body


# ---------------------------------------------------------------------------------------------
# streaming, backpressure, slow clients


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


HUNDRED_MB = 100 * 1024 * 1024
# Under ASan freed memory sits in a quarantine that counts as resident: keep it small where the
# test measures memory (no effect on a normal build).
SMALL_QUARANTINE = {"ASAN_OPTIONS": ":".join(
    x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=1") if x)}


def test_100mb_upload_and_download_streamed_with_bounded_rss(procs, pki, site, upstream, tmp_path):
    e = start_edge(procs, pki, site, "--max-body-size", "200m",
                   sites=proxy_sites(pki, f"unix:{upstream}"), env=SMALL_QUARANTINE)
    base = rss_kb(e.proc.pid)
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
    peak = rss_kb(e.proc.pid, "VmHWM")
    assert peak - base < 32 * 1024, (base, peak)


def test_slow_reader_backpressure_keeps_memory_flat(procs, pki, site, upstream):
    """The upstream can send 100 MB at once; a client that reads slowly must not make the edge
    buffer it."""
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{upstream}"),
                   env=SMALL_QUARANTINE)
    base = rss_kb(e.proc.pid)
    s = client_ctx(pki).wrap_socket(socket.create_connection(("127.0.0.1", e.https), timeout=10),
                                    server_hostname="a.test")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(f"GET /big?n={HUNDRED_MB} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
    got = len(s.recv(65536))
    time.sleep(1.0)  # the upstream fills every buffer it can meanwhile
    held = rss_kb(e.proc.pid) - base
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


def test_memory_given_back_after_a_burst_of_connections(procs, pki, site):
    """400 TLS connections, each served a request and kept open, then closed: the worker's RSS
    goes back to within 25% of what it was before the burst, within a few seconds (it used to
    keep its peak for good: glibc gives back only the top of the heap)."""
    if sanitized_build():
        pytest.skip("RSS under ASan is the sanitizer's")
    e = start_edge(procs, pki, site, "--max-connections", "1000")
    for _ in range(5):  # the first handshakes set up OpenSSL's caches for good
        https_get(e, pki, "/")
    base = rss_kb(e.proc.pid)
    held = tls_requests(e, pki, 400, b"GET /style.css HTTP/1.1\r\nHost: a.test\r\n\r\n",
                        answered=b"body { color: red }")
    peak = rss_kb(e.proc.pid)
    assert peak > base + 3 * 1024, (base, peak)  # the burst did cost memory
    for s in held:
        s.close()
    wait_until(lambda: rss_kb(e.proc.pid) <= base * 1.25, timeout=5,
               what=f"RSS back near {base} KiB from {peak} KiB")


def test_500_slowloris_connections_do_not_block_others(procs, pki, site):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    e = start_edge(procs, pki, site, "--header-timeout", "2s", "--max-connections", "2000")
    slow = []
    for _ in range(250):
        for port in (e.http, e.https):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-a: " if port == e.http
                      else b"\x16\x03\x01\x00")
            slow.append(s)
    t0 = time.monotonic()
    r, body = https_get(e, pki, "/")
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


def test_testssl_reports_no_weakness(procs, pki, site):
    import shutil
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if not exe:
        pytest.skip("testssl.sh is not installed")
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--cert", pki["a_rsa"][0], "--key", pki["a_rsa"][1], "--static", f"/={site['www']}"]
    e = start_edge(procs, pki, site, sites=sites)
    r = subprocess.run([exe, "--quiet", "--color", "0", "--warnings", "off", "--openssl-timeout",
                        "5", "-p", "-s", "-U", f"127.0.0.1:{e.https}"],
                       capture_output=True, timeout=100)
    out = r.stdout.decode(errors="replace")
    assert "Testing vulnerabilities" in out and "Done" in out, out[-2000:]
    for bad in ("VULNERABLE", "NOT ok", "SSLv3      offered", "TLS 1      offered",
                "TLS 1.1    offered", "LOW: 64 Bit + DES, RC[2,4] (w/o export)       offered",
                "Obsolete CBC ciphers (AES, ARIA etc.)         offered"):
        assert bad not in out, (bad, out)
    assert "TLS 1.2    offered (OK)" in out and "TLS 1.3    offered (OK)" in out


def test_plain_site_without_tls_serves_static_with_sendfile_and_proxies(procs, pki, site, upstream,
                                                                         tmp_path):
    www = tmp_path / "plain"
    www.mkdir()
    blob = os.urandom(1 << 20) * 20
    (www / "blob.bin").write_bytes(blob)
    sites = ["--server-name", "plain.test", "--static", f"/files/={www}",
             "--upstream", f"unix:{upstream}"]
    e = start_edge(procs, pki, site, sites=sites, https=False)
    url = f"http://127.0.0.1:{e.http}"
    r = curl("-H", "Host: plain.test", "-o", str(tmp_path / "out.bin"), "-w", "%{http_code}",
             f"{url}/files/blob.bin")
    assert r.stdout == b"200"
    assert (tmp_path / "out.bin").read_bytes() == blob
    r = curl("-H", "Host: plain.test", "-r", "1000-1999", f"{url}/files/blob.bin")
    assert r.stdout == blob[1000:2000]
    r = curl("-H", "Host: plain.test", f"{url}/echo")
    h = {k.lower(): v for k, v in json.loads(r.stdout)["headers"]}
    assert h["x-forwarded-proto"] == "http"
    r = curl("-H", "Host: plain.test", f"{url}/.well-known/acme-challenge/tok_EN-123")
    assert r.stdout == b"tok_EN-123.thumbprint"


def test_http10_client_gets_dechunked_body(procs, pki, site, upstream):
    e = start_edge(procs, pki, site, sites=proxy_sites(pki, f"unix:{upstream}"))
    resp = raw(e.https, b"GET /big?n=70000&chunked HTTP/1.0\r\nHost: a.test\r\n\r\n",
               tls=client_ctx(pki))
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert body == b"x" * 70000


def test_config_user_drops_privileges(procs, pki, site, tmp_path):
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


def test_sd_notify_ready_reloading_stopping(procs, pki, site, tmp_path):
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(5)
    e = start_edge(procs, pki, site, env={"NOTIFY_SOCKET": path})
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


class Vanishing(socketserver.StreamRequestHandler):
    """An upstream that answers only the first request of each connection: on a reused one it
    closes unanswered, as an upstream does when it closes an idle keep-alive connection just as
    a request arrives. /vanish is never answered."""
    attempts = []

    def handle(self):
        first = True
        while (head := read_head(self.rfile)) is not None:
            method, target, _ = head[0].split(" ", 2)
            headers = dict((k.strip().lower(), v.strip())
                           for k, v in (line.split(":", 1) for line in head[1:]))
            Vanishing.attempts.append(f"{method} {target}")
            if target == "/vanish" or not first:
                return
            n, _ = read_body(self.rfile, headers)
            if target == "/slow":
                time.sleep(0.3)
            body = f"{method} {n}".encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            first = False


def test_proxy_retries_once_when_a_reused_connection_closes_unanswered(procs, pki, site,
                                                                       tmp_path):
    Vanishing.attempts = []
    srv = UnixHTTPServer(str(tmp_path / "v.sock"), Vanishing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    e = start_edge(procs, pki, site, https=False,
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


APPSERVER = binary("appserver", "appserver")


def test_proxy_through_appserver_reloads_fails_no_request(procs, pki, site, tmp_path):
    """Each appserver HUP ends the old workers, which close their idle keep-alive connections
    while the edge may be sending a request on one."""
    sock = str(tmp_path / "app.sock")
    app = procs.start([APPSERVER, "-b", "unix:" + sock, "-w", "2",
                       binary("appserver", "mod_v1.so")], name="appserver")
    wait_until(lambda: "serving (" in procs.log(app), what="appserver up")
    e = start_edge(procs, pki, site, https=False,
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


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_stop_when_the_master_is_killed(procs, pki, site):
    e = start_edge(procs, pki, site, workers="2")
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
        wait_until(lambda: not any(alive(w) for w in workers), timeout=5, what="workers gone")
    finally:
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)
    assert not port_open(e.http)
