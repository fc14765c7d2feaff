"""The servers the HTTP/2 suite judges: hearth's edge, and nginx and Caddy as peers that show
the cases are right. Each serves the same directory (index.html, 1k.html, 1m.bin) over TLS
with a self-signed certificate and sends POST /echo to one small HTTP/1.1 upstream that
answers with the body it was sent.

Peers that break the RFC in a case are marked there with breaks(peer="why"), which makes the
case xfail(strict=True) for that peer only."""
import http.server
import os
import shutil
import socket
import ssl
import sys
import threading

import pytest

SOURCE = os.environ.get("HEARTH_SOURCE", os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("HEARTH_BUILD", os.path.join(SOURCE, "build"))
sys.path.insert(0, os.path.join(SOURCE, "bench"))
sys.path.insert(0, os.path.join(SOURCE, "tests"))
from hearthbench import material  # noqa: E402
from hearthkit.certs import make_cert  # noqa: E402
from hearthkit.ports import free_port  # noqa: E402
from hearthkit.procs import Server, wait_answering  # noqa: E402

TARGETS = ("hearth", "nginx", "caddy")
INDEX = b"<!doctype html><title>h2</title><p>hello over h2</p>\n"


# why a peer fails a case, where several cases share the reason
NO_TRAILERS = "1.22 takes no request trailers: the second HEADERS is a reused stream id"
LATE_SIZE_UPDATE = "takes a dynamic table size update after a field (RFC 7541 4.2)"
VALUE_WHITESPACE = "takes whitespace at either end of a field value"


def breaks(**reasons):
    """Mark a case (or one of its parameters) as failing for the named peers, with why."""
    return pytest.mark.peer_xfail(**reasons)


class Target:
    def __init__(self, name, server, port, www):
        self.name, self.server, self.port, self.www = name, server, port, www
        self.host = "localhost"

    def file(self, name):
        with open(os.path.join(self.www, name), "rb") as f:
            return f.read()

    def alpn(self):
        """The protocol the server picks when offered h2 and http/1.1."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            with ctx.wrap_socket(s, server_hostname=self.host) as t:
                return t.selected_alpn_protocol()

    def stop(self):
        self.server.stop()


# ---------------------------------------------------------------------------------------------
# the upstream behind /echo


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers a request to /echo with 200 and the request's body (Content-Length or chunked),
    any other with 404."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        """The request body, or None when it was cut short (the proxy gave up on it)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                line = self.rfile.readline()
                if not line.strip():
                    return None
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return out
                piece = self.rfile.read(size)
                if len(piece) < size:
                    return None
                out += piece
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        return body if len(body) == n else None

    def _answer(self):
        body = self._body()
        if body is None:
            self.close_connection = True
            return
        if self.path.split("?")[0] != "/echo":
            # hearth sends what its "/" root does not hold to the upstream (try_files), nginx
            # and Caddy only /echo: a missing file is a 404 for all three
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer


def start_echo():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Echo)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# ---------------------------------------------------------------------------------------------
# the servers

NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log info;
events {{ worker_connections 1024; }}
http {{
  access_log off;
""" + material.NGINX_TEMP_PATHS + """\
  types {{ text/html html; application/octet-stream bin; }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    server_name localhost;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {www};
    location = /echo {{
      proxy_pass http://127.0.0.1:{echo};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""

CADDYFILE = """\
{{
  admin off
  auto_https off
  storage file_system {dir}/caddy-data
}}
https://:{port} {{
  bind 127.0.0.1
  tls {cert} {key}
  handle /echo {{
    reverse_proxy 127.0.0.1:{echo}
  }}
  handle {{
    root * {www}
    file_server
  }}
}}
"""


def _nginx(d, port, cert, key, www, echo):
    conf = os.path.join(d, "nginx.conf")
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the tmp directory
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(user=user, dir=d, port=port, cert=cert, key=key, www=www,
                                  echo=echo))
    return Server("nginx", [shutil.which("nginx"), "-c", conf, "-p", d], d)


def _caddy(d, port, cert, key, www, echo):
    conf = os.path.join(d, "Caddyfile")
    with open(conf, "w") as f:
        f.write(CADDYFILE.format(dir=d, port=port, cert=cert, key=key, www=www, echo=echo))
    env = {"GOMAXPROCS": "1", "HOME": d, "XDG_DATA_HOME": d, "XDG_CONFIG_HOME": d}
    return Server("caddy", [shutil.which("caddy"), "run", "--config", conf, "--adapter",
                            "caddyfile"], d, env=env)


def _hearth(d, port, cert, key, www, echo):
    edge = os.path.join(BUILD, "edge", "edge")
    return Server("edge", [edge, "--https", f"127.0.0.1:{port}", "--workers", "1",
                           "--server-name", "localhost", "--cert", cert, "--key", key,
                           "--static", f"/={www}", "--upstream", f"127.0.0.1:{echo}"], d)


STARTERS = {"nginx": _nginx, "caddy": _caddy, "hearth": _hearth}


def start(name, d, echo_port):
    """Start the named target in directory d; returns a Target once it answers."""
    if name not in STARTERS:
        raise ValueError(f"unknown HTTP/2 target {name!r}: one of {', '.join(TARGETS)}")
    if name != "hearth" and shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    os.makedirs(d, exist_ok=True)
    cert, key = make_cert(d)
    www = os.path.join(d, "www")
    material.make_files(www)
    with open(os.path.join(www, "index.html"), "wb") as f:
        f.write(INDEX)
    port = free_port()
    server = STARTERS[name](d, port, cert, key, www, echo_port)
    wait_answering(server, port, "/index.html", tls=True)
    return Target(name, server, port, www)
