"""Small servers the tests talk to through hearth or in its place: HTTP/1.1 upstreams on a
Unix or TCP socket (Upstream: routes that show what the edge forwards, big and slow answers,
a WebSocket echo; Vanishing: one that closes reused connections unanswered), one that answers
garbage, and HTTPS servers for a handler of the caller's (a fake or misbehaving CA)."""
import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import socketserver
import ssl
import threading
import time


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


class Answer(http.server.BaseHTTPRequestHandler):
    """A server that answers every GET and POST with 200 and its body (a subclass sets it):
    an ACME server or an etcd that answers garbage."""
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        try:
            self.wfile.write(self.body)
        except ConnectionError:
            pass  # a client that stops reading a body too large for it

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.do_GET()

    def log_message(self, *a):
        pass


@contextlib.contextmanager
def serve_http(handler, tls=None):
    """An HTTP server on a free loopback port for handler (an http.server request handler
    class), HTTPS with tls/cert.pem and tls/key.pem (certs.make_test_pki's files); srv.url is
    its base URL. Shut down when the block ends."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls / "cert.pem", tls / "key.pem")
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.url = f"{'https' if tls else 'http'}://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def serve_https(tls, handler):
    """serve_http() with TLS."""
    return serve_http(handler, tls)
