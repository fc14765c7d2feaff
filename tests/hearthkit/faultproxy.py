"""A transparent reverse proxy to Pebble that answers chosen requests with faults first (a
429 with Retry-After, a 503, a broken body...), to see what certd does with them. As a context
manager: with fault_proxy(pebble, faults) as proxy: certd is pointed at proxy.directory;
proxy.seen lists what came through, proxy.faults what was not used up."""
import contextlib
import http.server
import time
import urllib.error
import urllib.request

from .upstreams import serve_https


class FaultProxy(http.server.BaseHTTPRequestHandler):
    """A transparent reverse proxy to Pebble (the Host header passes through, so Pebble's URLs
    and its JWS url check name the proxy) that answers chosen POSTs with a fault first."""
    pebble = None
    faults = {}  # path prefix -> [(status, headers)], used up in order
    seen = []  # (monotonic time, method, path)

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        self.seen.append((time.monotonic(), self.command, self.path))
        for prefix, queue in self.faults.items():
            if self.command == "POST" and self.path.startswith(prefix) and queue:
                status, headers, *body = queue.pop(0)
                data = body[0] if body else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
        skip = ("content-length", "connection", "accept-encoding", "transfer-encoding")
        req = urllib.request.Request(f"https://127.0.0.1:{self.pebble.port}{self.path}",
                                     data=body, method=self.command,
                                     headers={k: v for k, v in self.headers.items()
                                              if k.lower() not in skip})
        try:
            resp = urllib.request.urlopen(req, context=self.pebble.ctx, timeout=10)
        except urllib.error.HTTPError as e:
            resp = e
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            if k.lower() not in skip:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = forward

    def log_message(self, *a):
        pass


@contextlib.contextmanager
def fault_proxy(pebble, faults):
    """FaultProxy in front of pebble (a pebble.Pebble) with faults {path prefix: [(status,
    headers[, body]), ...]}, on HTTPS with Pebble's own API certificate."""
    handler = type("F", (FaultProxy,), {"pebble": pebble, "seen": [], "faults": faults})
    with serve_https(pebble.tls, handler) as srv:
        handler.directory = f"{srv.url}/dir"
        yield handler
