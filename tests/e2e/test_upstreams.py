"""Several upstreams behind one site (docs/edge.md, "Upstreams"): real appservers on TCP
loopback ports killed, stopped and brought back under a client loop, with the supervisor's
metrics showing each transition; every upstream down; an active check taking out a server that
answers its health check with 500; which requests are tried again on another upstream."""
import http.server
import json
import re
import signal
import socket
import socketserver
import threading
import time
import urllib.request

from hearthkit import binary
from hearthkit.clients import Load
from hearthkit.edge import start_edge
from hearthkit.ports import free_port, port_open
from hearthkit.procs import Processes, http_get, wait_until
from hearthkit.upstreams import TcpHTTPServer, read_body, read_head

SUPERVISOR = binary("supervisor", "hearth")
APPSERVER = binary("appserver", "appserver")
HELLO = binary("examples", "hello.so")


class App:
    """An appserver running the hello module on a loopback port, in a session of its own so
    that its master and workers can be signalled together."""

    def __init__(self, tmp_path, port):
        self.procs = Processes(tmp_path, session=True)
        self.port = port
        self.start()

    def start(self):
        self.proc = self.procs.start([APPSERVER, "-w", "2", "-b", f"127.0.0.1:{self.port}", HELLO],
                                     name=f"app-{self.port}")
        wait_until(lambda: self.proc.poll() is not None or (
            "serving (" in self.proc.log() and port_open(self.port)), timeout=15,
            what=f"appserver on {self.port}")
        assert self.proc.poll() is None, self.proc.log()

    def signal(self, sig):
        self.proc.kill_tree(sig)


def scrape(port):
    """{'name{labels}': value} of the samples the supervisor serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {k: float(v) for k, v in re.findall(r"^([a-z_]+(?:\{.*\})?) (\S+)$", text, re.M)}


def test_kill_one_stop_another_bring_them_back_under_load(tmp_path):
    apps = [App(tmp_path, free_port()) for _ in range(3)]
    http, metrics = free_port(), free_port()
    ups = [f"127.0.0.1:{a.port}" for a in apps]
    config = tmp_path / "hearth.yaml"
    config.write_text(
        f"run_dir: {tmp_path}/run\nstate_dir: {tmp_path}/state\n"
        f"metrics: 127.0.0.1:{metrics}\n"
        f"edge:\n  http: [\"127.0.0.1:{http}\"]\n  https: []\n  workers: 2\n"
        "  proxy_read_timeout: 1s\n  proxy_connect_timeout: 1s\n"
        "supervisor:\n  stop_timeout: 2s\n"
        "sites:\n  - name: app.localhost\n    tls: \"off\"\n"
        f"    upstreams: [{', '.join(ups)}]\n    fail_timeout: 1s\n"
        "    health_check: {path: /, interval: 300ms, timeout: 500ms, rise: 2, fall: 2}\n")
    procs = Processes(tmp_path)
    try:
        sup = procs.start([SUPERVISOR, "start", "-c", str(config)], name="supervisor")
        up = {u: f'hearth_edge_upstream_up{{site="app.localhost",upstream="{u}"}}' for u in ups}

        def gauge(u, want):
            return lambda: scrape(metrics).get(up[u]) == want

        wait_until(lambda: port_open(metrics) and all(gauge(u, 2)() for u in ups), timeout=15,
                   what="both edge workers to count every upstream up")
        fetch = lambda: http_get("127.0.0.1", http, "/", timeout=10)  # noqa: E731 (the one site)
        t0 = time.monotonic()
        with Load(fetch, threads=2) as load:
            time.sleep(0.5)
            apps[0].signal(signal.SIGKILL)  # the master and its workers
            wait_until(gauge(ups[0], 0), timeout=5, what="the killed upstream down")
            apps[1].signal(signal.SIGSTOP)
            wait_until(gauge(ups[1], 0), timeout=5, what="the stopped upstream down")
            time.sleep(0.5)
            apps[0].proc.wait()
            apps[0].start()
            apps[1].signal(signal.SIGCONT)
            wait_until(lambda: gauge(ups[0], 2)() and gauge(ups[1], 2)(), timeout=8,
                       what="both back up")
            time.sleep(0.3)
        took = time.monotonic() - t0
        assert load.failures == [], load.failures[:5]
        assert len(load.bodies) > 20 and all(b == b"Hello, world!\n" for b in load.bodies)
        m = scrape(metrics)
        moves = 'hearth_edge_upstream_transitions_total{site="app.localhost",upstream="%s",to="%s"}'
        for u in ups[:2]:
            assert m[moves % (u, "down")] >= 1 and m[moves % (u, "up")] >= 1, m
        assert m[up[ups[2]]] == 2
        edge_log = sup.log()
        assert re.search(rf"upstream {ups[0]} failed.*(refused|health check)", edge_log), edge_log
        assert f"upstream {ups[1]} failed 2 health check(s) in a row" in edge_log, edge_log
        assert f"upstream {ups[1]} passed 2 health check(s) in a row" in edge_log, edge_log
        retries = m.get('hearth_edge_proxy_retries_total{site="app.localhost"}')
        moved = sorted((k, v) for k, v in m.items() if "transitions" in k)
        print(f"\nupstreams: {len(load.bodies)} answers, 0 failed, in {took:.1f} s; "
              f"retries {retries}, transitions {moved}")
    finally:
        for a in apps:
            a.signal(signal.SIGCONT)
        procs.stop_all()
        for a in apps:
            a.procs.stop_all()


# ---- a standalone edge from a YAML file, and small upstreams of the test's own ----


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 200 with its server's name, or 500 on /healthz while server.sick; records each
    request as 'METHOD PATH'."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.server.seen.append(f"{self.command} {self.path}")
        sick = self.path == "/healthz" and self.server.sick
        body = self.server.name.encode()
        self.send_response(500 if sick else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


def recorder(name):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.daemon_threads = True
    srv.name, srv.sick, srv.seen = name, False, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class Swallow(socketserver.StreamRequestHandler):
    """Reads each request whole, body included, and closes without a word; server.taken gets
    its method."""

    def handle(self):
        head = read_head(self.rfile)
        headers = dict((k.strip().lower(), v.strip())
                       for k, v in (line.split(":", 1) for line in head[1:]))
        read_body(self.rfile, headers)
        self.server.taken.append(head[0].split(" ", 1)[0])


def swallower():
    srv = TcpHTTPServer(("127.0.0.1", 0), Swallow)
    srv.taken = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def edge_from_yaml(procs, tmp_path, sites):
    """A one-worker edge on a free plain-HTTP port with sites (YAML) and a JSON access log."""
    port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(f"run_dir: {tmp_path}\nstate_dir: {tmp_path}\n"
                      f"edge:\n  http: [\"127.0.0.1:{port}\"]\n  https: []\n"
                      f"  access_log: {tmp_path}/access.log\n  access_log_format: json\n"
                      f"sites:\n{sites}")
    return start_edge(procs, "--config", str(config), http=port, https=None)


def request(edge, host, method="GET", path="/", body=None):
    with socket.create_connection(("127.0.0.1", edge.http), timeout=10) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + (body or b""))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def access_log(tmp_path):
    with open(tmp_path / "access.log") as f:
        return [json.loads(line) for line in f]


def test_every_upstream_down_answers_502_at_once_with_one_line(procs, tmp_path):
    dead = [free_port(), free_port()]
    e = edge_from_yaml(procs, tmp_path, "  - name: a.test\n    tls: \"off\"\n"
                       f"    upstreams: [\"127.0.0.1:{dead[0]}\", \"127.0.0.1:{dead[1]}\"]\n")
    for _ in range(20):
        t0 = time.monotonic()
        assert request(e, "a.test")[0] == 502
        assert time.monotonic() - t0 < 0.5
    log = e.log()
    assert log.count("site a.test: all 2 upstream(s) are down; answering 502") == 1, log
    for port in dead:  # each was tried once, by the first request, then left alone
        assert log.count(f"upstream 127.0.0.1:{port} failed") == 1, log
    tries = [line.get("upstream_tries") for line in access_log(tmp_path)]
    assert tries[0] == 2 and tries[1:] == [None] * 19, tries


def test_a_failing_health_check_takes_an_accepting_server_out(procs, tmp_path):
    good, sick = recorder("good"), recorder("sick")
    e = edge_from_yaml(procs, tmp_path, "  - name: a.test\n    tls: \"off\"\n"
                       f"    upstreams: [\"127.0.0.1:{good.server_port}\", "
                       f"\"127.0.0.1:{sick.server_port}\"]\n    balance: least_conn\n"
                       "    health_check: {path: /healthz, interval: 200ms, timeout: 1s, "
                       "rise: 2, fall: 2}\n")
    served = lambda: [request(e, "a.test")[1] for _ in range(6)]  # noqa: E731
    assert set(served()) == {b"good", b"sick"}
    sick.sick = True
    wait_until(lambda: "failed 2 health check(s) in a row (status 500)" in e.log(), timeout=5,
               what="the sick server taken out")
    assert set(served()) == {b"good"}
    assert "GET /healthz" in good.seen and "GET /healthz" in sick.seen
    e.proc.send_signal(signal.SIGHUP)  # a reload keeps what the worker knows
    wait_until(lambda: "reloaded" in e.log(), timeout=5, what="the reload")
    assert set(served()) == {b"good"}
    sick.sick = False
    wait_until(lambda: "passed 2 health check(s) in a row; back in rotation" in e.log(),
               timeout=5, what="the sick server back")
    assert set(served()) == {b"good", b"sick"}
    for s in (good, sick):
        s.shutdown()
        s.server_close()


def test_what_is_tried_again_on_another_upstream(procs, tmp_path):
    refused = free_port()
    echo_a, echo_b, swallow = recorder("a"), recorder("b"), swallower()
    e = edge_from_yaml(procs, tmp_path,
                       "  - name: a.test\n    tls: \"off\"\n"
                       f"    upstreams: [\"127.0.0.1:{refused}\", "
                       f"\"127.0.0.1:{echo_a.server_port}\"]\n"
                       "  - name: b.test\n    tls: \"off\"\n    max_fails: 0\n"
                       f"    upstreams: [\"127.0.0.1:{swallow.server_address[1]}\", "
                       f"\"127.0.0.1:{echo_b.server_port}\"]\n")
    # refused: nothing was sent, so even a POST goes to the next upstream
    assert request(e, "a.test", "POST", "/form", b"x=1") == (200, b"a")
    assert echo_a.seen == ["POST /form"]
    # the whole POST went out and the upstream closed unanswered: it may have acted on it
    assert request(e, "b.test", "POST", "/form", b"x=2")[0] == 502
    assert swallow.taken == ["POST"] and echo_b.seen == []
    # a GET in the same spot is tried again (round robin: b's next is echo_b, then swallow)
    assert [request(e, "b.test", "GET", "/page")[0] for _ in range(2)] == [200, 200]
    assert swallow.taken == ["POST", "GET"] and echo_b.seen == ["GET /page", "GET /page"]
    log = access_log(tmp_path)
    assert [(x["status"], x["upstream_tries"]) for x in log] == [(200, 2), (502, 1), (200, 1),
                                                                 (200, 2)], log
    assert log[0]["upstream"] == f"127.0.0.1:{echo_a.server_port}"
    for s in (echo_a, echo_b, swallow):
        s.shutdown()
        s.server_close()
