"""End-to-end tests of the appserver: the real binary, real modules, real clients (http.client,
raw sockets, curl) over its Unix socket."""
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import hearthkit.clients
from hearthkit import binary
from hearthkit.clients import read_until_close
from hearthkit.ports import unix_open
from hearthkit.procs import children, wait_until

APPSERVER = binary("appserver", "appserver")


def module(name):
    return binary("appserver", name + ".so")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def request(sock, path, method="GET", body=None, headers=None, timeout=10):
    """One request on a fresh connection: (status, headers dict lowercased, body bytes)."""
    c = UnixHTTPConnection(sock, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def raw(sock, data, timeout=5):
    """Send bytes, read until the server closes (or timeout): everything it answered."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(data)
    return read_until_close(s)


def statuses(answer):
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


class App:
    def __init__(self, procs, proc, sock):
        self.procs, self.proc, self.sock = procs, proc, sock

    def log(self):
        return self.procs.log(self.proc)

    def get(self, path, **kw):
        return request(self.sock, path, **kw)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_log(self, pattern, timeout=10):
        wait_until(lambda: re.search(pattern, self.log()), timeout=timeout, what=pattern)


def start(procs, tmp_path, modules, *args, workers=2, wait=True):
    sock = str(tmp_path / "app.sock")
    argv = [APPSERVER, "-b", "unix:" + sock, "-w", str(workers), *args, *modules]
    # crash tests kill workers with SIGSEGV/SIGABRT: no core files on machines that keep them
    p = procs.start(argv, name="appserver",
                    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    app = App(procs, p, sock)
    if wait:
        wait_until(lambda: p.poll() is not None or "serving (" in app.log(), what="appserver up")
        assert p.poll() is None, app.log()
    return app


@pytest.fixture
def v1(procs, tmp_path):
    return start(procs, tmp_path, [module("mod_v1")])


# ---- routes, params, errors -------------------------------------------------------------


def test_routes_params_and_sdk(v1):
    assert v1.get("/") [0::2] == (200, b"v1\n")
    assert v1.get("/hello/w%C3%B6rld%20x")[2] == "hello, wörld x (v1)\n".encode()
    assert v1.get("/items/new")[2] == b"the new item form\n"  # literal beats :id
    assert v1.get("/items/42")[2] == b"item 42\n"
    assert v1.get("/files/a/b%2Fc.txt")[2] == b"path=a/b/c.txt\n"
    assert v1.get("/files/")[2] == b"path=\n"
    assert v1.get("/query?a=1+2&b=%41%42")[2] == b"a=1 2 b=AB\n"
    assert v1.get("/cookie", headers={"Cookie": "a=b; session=s3cr3t"})[2] == b"session=s3cr3t\n"
    assert v1.get("/client", headers={"X-Real-IP": "203.0.113.9"})[2] == b"203.0.113.9\n"
    assert v1.get("/client", headers={"X-Forwarded-For": "10.0.0.1, 198.51.100.7"})[2] == (
        b"198.51.100.7\n")
    st, h, body = v1.get("/redirect")
    assert (st, h["location"]) == (303, "/")
    st, h, body = v1.get("/json", method="POST", body=b'{"a": 1, "b": [2]}',
                         headers={"Content-Type": "application/json"})
    assert (st, h["content-type"], body) == (200, "application/json",
                                             b'{"keys":2,"echo":{"a":1,"b":[2]}}\n')
    assert v1.get("/json", method="POST", body=b"not json")[0] == 400
    st, _, body = v1.get("/form", method="POST", body=b"x=1&name=J%C3%BCrgen+M",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert body == "name=Jürgen M\n".encode()
    # the handler cannot inject header lines or take over framing
    assert v1.get("/bad-header")[2] == b"refused=1\n"
    # a module function named like one of the server's internals stays the module's own
    assert v1.get("/own-symbol")[2] == b"42\n"


def test_404_405_head_and_500(v1):
    st, h, body = v1.get("/nope")
    assert st == 404
    st, h, body = v1.get("/items/3", method="POST")
    assert st == 405
    assert h["allow"] == "GET, HEAD, DELETE"
    assert v1.get("/items/3", method="DELETE")[0] == 204
    st, h, body = v1.get("/hello/x", method="HEAD")
    assert (st, body, h["content-length"]) == (200, b"", str(len(b"hello, x (v1)\n")))
    st, h, body = v1.get("/fail")
    assert st == 500 and b"fire" not in body
    v1.wait_log(r"route GET /fail \(GET /fail\): handler failed: database is on fire")


def test_bodies_content_length_chunked_and_limits(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_v1")], "--max-body-size", "64k")
    st, h, body = app.get("/echo", method="POST", body=b"x" * 5000)
    assert (st, h["x-body-length"], body) == (200, "5000", b"x" * 5000)
    chunked = (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\n")
    answer = raw(app.sock, chunked)
    assert statuses(answer) == [200]
    assert answer.endswith(b"\r\n\r\nhello, world") and b"X-Body-Length: 12" in answer
    assert app.get("/echo", method="POST", body=b"y" * 70000)[0] == 413
    big = b"z" * 70000
    answer = raw(app.sock, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")
    assert statuses(answer) == [413]
    # curl with Expect: 100-continue gets its 100 and then the answer
    data = tmp_path / "body.bin"
    data.write_bytes(b"q" * 20000)
    out = subprocess.run(["curl", "-s", "--unix-socket", app.sock, "-H", "Expect: 100-continue",
                          "--data-binary", "@" + str(data), "http://a/echo"],
                         capture_output=True, timeout=10)
    assert out.stdout == b"q" * 20000


def test_keepalive_and_pipelining(v1):
    c = UnixHTTPConnection(v1.sock)
    pids = set()
    for _ in range(5):
        c.request("GET", "/pid")
        r = c.getresponse()
        assert r.status == 200
        pids.add(r.read())
    c.close()
    assert len(pids) == 1  # one connection, one worker
    pipelined = (b"GET /hello/one HTTP/1.1\r\nHost: a\r\n\r\n"
                 b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                 b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
                 b"GET /hello/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    answer = raw(v1.sock, pipelined)
    assert statuses(answer) == [200, 200, 404, 200]
    assert answer.index(b"hello, one") < answer.index(b"abc") < answer.index(b"hello, last")
    # HTTP/1.0 closes unless asked otherwise
    answer = raw(v1.sock, b"GET / HTTP/1.0\r\n\r\n")
    assert statuses(answer) == [200] and b"Connection: close" in answer


HOSTILE = [
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
     400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
     431),
    (b"GET /files/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /files/%2e%2e/secret HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /hello/%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /hello/a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
]


def test_hostile_requests_get_4xx_and_next_client_is_served(v1):
    for data, want in HOSTILE:
        answer = raw(v1.sock, data)
        assert statuses(answer)[:1] == [want], (data[:80], answer[:200])
        assert v1.get("/")[0::2] == (200, b"v1\n")
    # an empty line before a request line is skipped (RFC 9112 2.2), and HTTP/1.0 needs no Host
    answer = raw(v1.sock, b"\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert statuses(answer) == [200], answer[:200]
    assert statuses(raw(v1.sock, b"GET / HTTP/1.0\r\n\r\n")) == [200]
    # a slowloris head is cut off, and the server never hung meanwhile
    s = socket.socket(socket.AF_UNIX)
    s.connect(v1.sock)
    s.sendall(b"GET / HTTP/1.1\r\nHost")
    assert v1.get("/")[0] == 200
    s.close()
    assert children(v1.proc.pid)  # workers alive


# ---- modules that must be refused ---------------------------------------------------------


@pytest.mark.parametrize("mod,message", [
    ("mod_abi", r"module ABI version 999\.0, this appserver speaks version 1\.1"),
    ("mod_initfail", r"init failed \(returned 7\)"),
    ("mod_broken", r"undefined symbol: hearth_this_symbol_does_not_exist"),
    ("mod_loadcrash", r"failed to boot: killed by"),
])
def test_bad_module_refused_at_start(procs, tmp_path, mod, message):
    app = start(procs, tmp_path, [module(mod)], wait=False)
    assert app.proc.wait(timeout=10) == 1
    assert re.search(message, app.log()), app.log()


def test_missing_module_file(procs, tmp_path):
    app = start(procs, tmp_path, [str(tmp_path / "nope.so")], wait=False)
    assert app.proc.wait(timeout=10) != 0
    assert "nope.so: No such file" in app.log()


# ---- reload -------------------------------------------------------------------------------


class Load(hearthkit.clients.Load):
    """Clients sending requests continuously (a fresh connection each time, as the edge's
    new connections do), recording every answer and every failure."""

    def __init__(self, sock, threads=3, path="/"):
        self.sock, self.path = sock, path
        super().__init__(lambda: request(sock, path, timeout=5)[0::2], threads)


def reloadable(procs, tmp_path, workers=2):
    target = tmp_path / "app.so"
    shutil.copy(module("mod_v1"), target)
    return start(procs, tmp_path, [str(target)], workers=workers), target


def deploy(src, target):
    """Replace the module file the way a deploy must: a new file renamed over the old."""
    tmp = target.with_suffix(".new")
    shutil.copy(src, tmp)
    os.replace(tmp, target)


def test_reload_under_load_switches_with_zero_failures(procs, tmp_path):
    app, target = reloadable(procs, tmp_path)
    old_workers = set(children(app.proc.pid))
    load = Load(app.sock)
    time.sleep(0.4)
    deploy(module("mod_v2"), target)
    app.signal(signal.SIGHUP)
    app.wait_log(r"reload complete: generation 2 serving")
    wait_until(lambda: not old_workers & set(children(app.proc.pid)), what="old workers gone")
    mark = len(load.bodies)
    time.sleep(0.4)
    load.finish()
    assert load.failures == []
    assert load.bodies[0] == b"v1\n"
    assert set(load.bodies[mark:]) == {b"v2\n"} and len(load.bodies) > mark + 10


class KeepAliveLoad(Load):
    """Clients that keep their connection, as the edge's upstream pool and wrk do, and never
    retry: a worker retiring on a reload must answer a request sent on a kept connection (with
    Connection: close, after which http.client connects afresh), never reset it."""

    def run(self):
        c = UnixHTTPConnection(self.sock, timeout=5)
        while not self.stop.is_set():
            try:
                c.request("GET", self.path)
                r = c.getresponse()
                body = r.read()
                (self.bodies if r.status == 200 else self.failures).append(
                    body if r.status == 200 else r.status)
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failures.append(repr(e))
                c.close()
        c.close()


def test_reload_under_keepalive_load(procs, tmp_path):
    app, target = reloadable(procs, tmp_path)
    load = KeepAliveLoad(app.sock, threads=8)
    time.sleep(0.3)
    deploy(module("mod_v2"), target)
    app.signal(signal.SIGHUP)
    app.wait_log(r"reload complete: generation 2 serving")
    wait_until(lambda: load.bodies[-1:] == [b"v2\n"], what="v2 on kept connections")
    time.sleep(0.2)
    load.finish()
    assert load.failures == []
    assert load.bodies[0] == b"v1\n" and load.bodies[-1] == b"v2\n"


@pytest.mark.parametrize("bad,message", [
    ("mod_broken", r"undefined symbol: hearth_this_symbol_does_not_exist"),
    ("mod_abi", r"ABI version 999"),
    ("mod_initfail", r"init failed"),
    ("mod_loadcrash", r"died while loading the modules \(killed by"),
])
def test_reload_with_broken_module_keeps_old_code(procs, tmp_path, bad, message):
    app, target = reloadable(procs, tmp_path)
    load = Load(app.sock)
    time.sleep(0.3)
    deploy(module(bad), target)
    app.signal(signal.SIGHUP)
    app.wait_log(r"reload failed: .*" + message)
    time.sleep(0.3)
    load.finish()
    assert load.failures == []
    assert set(load.bodies) == {b"v1\n"} and len(load.bodies) > 10
    # the running generation keeps its pinned file: a worker replaced now still loads v1
    pid = int(app.get("/pid")[2])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: app.get("/")[2] == b"v1\n" and int(app.get("/pid")[2]) != pid,
               what="replacement worker")
    assert app.get("/")[2] == b"v1\n"


def test_reload_with_missing_file(procs, tmp_path):
    app, target = reloadable(procs, tmp_path)
    os.unlink(target)
    app.signal(signal.SIGHUP)
    app.wait_log(r"reload failed: .*app\.so: No such file")
    assert app.get("/")[2] == b"v1\n"


# ---- crashes, timeouts, recycling ---------------------------------------------------------


def test_worker_crash_closes_connection_names_route_and_respawns(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_faulty")], workers=1)
    pid = int(app.get("/ok")[2].split()[1])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        app.get("/crash", timeout=5)
    app.wait_log(rf"worker {pid} killed by .* while serving route GET /crash \(request GET /crash\)")
    st, _, body = app.get("/ok")
    assert st == 200 and int(body.split()[1]) != pid
    assert app.proc.poll() is None


def test_crash_every_request_backs_off(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_faulty")], workers=1)
    t0 = time.monotonic()
    crashes = 0
    while time.monotonic() - t0 < 2.5:
        try:
            app.get("/crash", timeout=3)
        except (http.client.HTTPException, OSError):
            crashes += 1
    log = app.log()
    assert "waiting" in log and "before forking again" in log
    # without backoff this would be hundreds; with it, a handful
    assert log.count("while serving route GET /crash") < 25
    assert app.proc.poll() is None
    wait_until(lambda: app.get("/ok", timeout=12)[0] == 200, timeout=15, what="recovery")


def test_timeout_kills_worker_and_names_route(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_faulty")], "-t", "1", workers=1)
    t0 = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        app.get("/hang", timeout=10)
    assert time.monotonic() - t0 < 5
    app.wait_log(r"timed out \(no heartbeat for \d+ ms\) while serving route GET /hang "
                 r"\(request GET /hang\); sending SIGABRT")
    assert app.get("/ok")[0] == 200


def test_max_requests_recycles_workers(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_v1")], "--max-requests", "4",
                "--max-requests-jitter", "2", workers=1)
    pids = [int(app.get("/pid")[2]) for _ in range(20)]
    assert len(set(pids)) >= 3
    app.wait_log(r"max-requests\), restarting")
    assert "crashed" not in app.log()


def test_ttin_ttou(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_v1")], workers=1)
    wait_until(lambda: len(children(app.proc.pid)) == 1)
    # one at a time: two identical signals sent at once may be merged into one by the kernel
    app.signal(signal.SIGTTIN)
    wait_until(lambda: len(children(app.proc.pid)) == 2, what="2 workers")
    app.signal(signal.SIGTTIN)
    wait_until(lambda: len(children(app.proc.pid)) == 3, what="3 workers")
    app.signal(signal.SIGTTOU)
    wait_until(lambda: len(children(app.proc.pid)) == 2, what="2 workers")
    assert app.get("/")[0] == 200


def test_graceful_term_completes_requests_in_flight(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_v1")], workers=2)
    results = []

    def slow():
        try:
            results.append(app.get("/sleep?ms=1200", timeout=10)[0::2])
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    app.signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert results == [(200, b"slept v1\n")] * 3
    assert app.proc.wait(timeout=10) == 0
    assert not os.path.exists(app.sock)


def test_graceful_term_answers_connections_waiting_in_the_backlog(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_v1")], workers=1)
    results = []

    def get(path):
        try:
            results.append(app.get(path, timeout=10)[0])
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    busy = threading.Thread(target=get, args=("/sleep?ms=800",))
    busy.start()
    time.sleep(0.3)  # the only worker is inside the handler: new connections queue up
    queued = [threading.Thread(target=get, args=("/",)) for _ in range(3)]
    for t in queued:
        t.start()
    time.sleep(0.2)
    app.signal(signal.SIGTERM)
    wait_until(lambda: not os.path.exists(app.sock), what="socket path removed at once")
    for t in [busy, *queued]:
        t.join()
    assert results == [200] * 4
    assert app.proc.wait(timeout=10) == 0


def test_fast_stop_with_quit(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_v1")])
    app.signal(signal.SIGQUIT)
    assert app.proc.wait(timeout=5) == 0


# ---- flags: config file, pidfile, logs ----------------------------------------------------


def test_config_file_pidfile_and_access_log(procs, tmp_path):
    sock = tmp_path / "cfg.sock"
    access = tmp_path / "access.log"
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"""appserver:
  modules: [{module('mod_v1')}]
  bind: ["unix:{sock}"]
  workers: 2
  access_log: {access}
""")
    pidfile = tmp_path / "app.pid"
    p = procs.start([APPSERVER, "-c", str(cfg), "--pid", str(pidfile)], name="appserver")
    wait_until(lambda: unix_open(str(sock)), what="socket")
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="pidfile")
    assert int(pidfile.read_text()) == p.pid
    assert request(str(sock), "/hello/cfg", headers={"User-Agent": 'evil"agent'})[2] == (
        b"hello, cfg (v1)\n")
    wait_until(lambda: access.exists() and access.read_text(), what="access log line")
    line = access.read_text().splitlines()[-1]
    # the size is the body's ("hello, cfg (v1)\n"), as nginx and the edge count it
    assert re.match(r'unix - - \[.+\] "GET /hello/cfg HTTP/1.1" 200 16 "-" "evil\\x22agent"$',
                    line), line
    raw(str(sock), b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    wait_until(lambda: re.search(r'^unix - - \[.+\] "-" 400 12 "-" "-"$', access.read_text(), re.M),
               what="refused request logged")
    os.rename(access, tmp_path / "access.log.1")
    p.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    request(str(sock), "/")
    wait_until(access.exists, what="reopened access log")
    wait_until(lambda: children(p.pid) and len(children(p.pid)) == 2, what="two workers")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 0
    assert not pidfile.exists()


def test_usage_errors_exit_2(tmp_path):
    assert subprocess.run([APPSERVER], capture_output=True).returncode == 2
    assert subprocess.run([APPSERVER, "-w", "x", "a.so"], capture_output=True).returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("appserver:\n  wokers: 2\n")
    r = subprocess.run([APPSERVER, "-c", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "bad.yaml:2" in r.stderr


def test_tcp_bind_and_hello_example(procs, tmp_path):
    from hearthkit.ports import free_port, port_open
    port = free_port()
    p = procs.start([APPSERVER, "-b", f"127.0.0.1:{port}", binary("examples", "hello.so")],
                    name="appserver")
    wait_until(lambda: port_open(port))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/hello/tcp")
    assert c.getresponse().read() == b"Hello, tcp!\n"
    c.request("POST", "/echo", body=b'{"x": [1]}')
    assert c.getresponse().read() == b'{"you_sent":{"x":[1]}}\n'
    c.close()
    out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/client"], capture_output=True)
    assert out.returncode == 0
    assert p.poll() is None


# ---- examples/site: the notes API on SQLite -----------------------------------------------


@pytest.mark.skipif(not os.path.exists(binary("examples", "site.so")),
                    reason="examples/site not built (no libsqlite3-dev)")
def test_site_notes_api(procs, tmp_path):
    import json
    sock = str(tmp_path / "site.sock")
    p = procs.start([APPSERVER, "-b", "unix:" + sock, "-w", "3", binary("examples", "site.so")],
                    name="appserver", env={"HEARTH_SITE_DB": str(tmp_path / "notes.db")})
    wait_until(lambda: unix_open(sock) and "serving (" in open(p.log_path).read(), what="site")
    st, h, body = request(sock, "/api/notes", method="POST", body=b'{"title": "first", "body": "x"}',
                          headers={"Content-Type": "application/json"})
    assert st == 201
    first = json.loads(body)
    assert h["location"] == f"/api/notes/{first['id']}" and first["title"] == "first"
    st, _, body = request(sock, "/api/notes", method="POST", body=b"title=second+one&body=%C3%A9",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    second = json.loads(body)
    assert st == 201 and second["body"] == "é"
    # every worker has its own connection and sees the others' writes
    for _ in range(4):
        notes = json.loads(request(sock, "/api/notes")[2])["notes"]
        assert [n["title"] for n in notes] == ["first", "second one"]
    assert json.loads(request(sock, f"/api/notes/{second['id']}")[2]) == second
    assert request(sock, "/api/notes", method="POST", body=b'{"body": "no title"}')[0] == 422
    assert request(sock, f"/api/notes/{first['id']}", method="DELETE")[0] == 204
    assert request(sock, f"/api/notes/{first['id']}", method="DELETE")[0] == 404
    assert request(sock, "/api/notes/abc")[0] == 404
    assert request(sock, "/api/notes/1", method="PUT")[0] == 405
    assert json.loads(request(sock, "/api/health")[2])["ok"] is True


def test_module_built_outside_the_tree(procs, tmp_path):
    """What a user does (docs/module-abi.md): cc -shared -fPIC with the flags pkg-config gives
    for hearth-app, here from the build tree before any install, then serve the .so."""
    from hearthkit import BUILD, SOURCE
    so = tmp_path / "hello.so"
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(BUILD, "meson-uninstalled"))
    pc = subprocess.run(["pkg-config", "--cflags", "hearth-app"], capture_output=True,
                        text=True, env=env)
    assert pc.returncode == 0 and "appserver/include" in pc.stdout, pc.stdout + pc.stderr
    subprocess.run(["cc", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", *pc.stdout.split(),
                    os.path.join(SOURCE, "examples", "hello", "hello.c"), "-o", str(so)],
                   check=True)
    app = start(procs, tmp_path, [str(so)], workers=1)
    assert app.get("/hello/outside")[2] == b"Hello, outside!\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_group_drop_privileges(procs, tmp_path):
    import pwd
    import tempfile
    pwd.getpwnam("nobody")
    d = tempfile.mkdtemp(prefix="hearth-user-")  # pytest's tmp_path is private to root
    try:
        os.chmod(d, 0o1777)  # like /tmp: the unprivileged master removes its own files
        so = os.path.join(d, "app.so")
        shutil.copy(module("mod_v1"), so)
        os.chmod(so, 0o644)
        sock, pid = os.path.join(d, "app.sock"), os.path.join(d, "app.pid")
        p = procs.start([APPSERVER, "--user", "nobody", "-w", "1", "-b", "unix:" + sock,
                         "--pid", pid, so], name="appserver")
        wait_until(lambda: "serving (" in open(p.log_path).read(), what="serving")
        assert request(sock, "/")[2] == b"v1\n"
        uids = {os.stat(f"/proc/{x}").st_uid for x in [p.pid, *children(p.pid)]}
        assert uids == {pwd.getpwnam("nobody").pw_uid}
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        assert not os.path.exists(sock) and not os.path.exists(pid)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_pipelined_flood_with_slow_reader_is_answered_in_full(v1):
    """Thousands of pipelined requests from a client that reads nothing for a while: the worker
    stops reading instead of buffering without bound, then answers every one in order."""
    n = 12000  # about 1.8 MB of answers: past the worker's 1 MiB high-water mark
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(v1.sock)
    reqs = b"".join(b"GET /hello/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(n - 1))
    reqs += b"GET /hello/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    sender = threading.Thread(target=s.sendall, args=(reqs,))
    sender.start()
    time.sleep(0.5)
    assert v1.get("/")[0] == 200  # other clients are served meanwhile
    out = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        out += chunk
    sender.join()
    s.close()
    assert out.count(b"HTTP/1.1 200 OK") == n
    assert out.index(b"hello, 0 (v1)") < out.index(b"hello, 6000 (v1)") < out.index(b"hello, last")
    assert out.rstrip().endswith(b"hello, last (v1)")


def test_sd_notify_ready_and_reloading(procs, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    notify.bind(path)
    notify.settimeout(10)
    sock = str(tmp_path / "app.sock")
    p = procs.start([APPSERVER, "-b", "unix:" + sock, module("mod_v1")], name="appserver",
                    env={"NOTIFY_SOCKET": path})
    assert b"READY=1" in notify.recv(4096)
    p.send_signal(signal.SIGHUP)
    assert b"RELOADING=1" in notify.recv(4096)
    assert b"READY=1" in notify.recv(4096)
    p.send_signal(signal.SIGTERM)
    assert b"STOPPING=1" in notify.recv(4096)
    assert p.wait(timeout=10) == 0
    notify.close()


def test_hup_rereads_config_file(procs, tmp_path):
    sock = tmp_path / "cfg.sock"
    cfg = tmp_path / "hearth.yaml"

    def write(mod, workers):
        cfg.write_text(f"appserver:\n  modules: [{module(mod)}]\n  bind: [\"unix:{sock}\"]\n"
                       f"  workers: {workers}\n")

    write("mod_v1", 1)
    p = procs.start([APPSERVER, "-c", str(cfg)], name="appserver")
    wait_until(lambda: unix_open(str(sock)), what="socket")
    assert request(str(sock), "/")[2] == b"v1\n"
    write("mod_v2", 2)
    p.send_signal(signal.SIGHUP)
    wait_until(lambda: request(str(sock), "/")[2] == b"v2\n", what="v2 from the new config")
    wait_until(lambda: len(children(p.pid)) == 2, what="two workers from the new config")
    # the count can pass 2 while the new workers are still being forked: a HUP before the
    # reload completes is ignored, so wait for that before the next one
    wait_until(lambda: "reload complete" in open(p.log_path).read(), what="reload complete")
    # a broken config file is refused and the running setup stays
    cfg.write_text("appserver:\n  workers: many\n")
    p.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload refused: config not reloaded" in open(p.log_path).read(), what="refusal logged")
    assert request(str(sock), "/")[2] == b"v2\n"


def test_inherited_socket_from_supervisor(procs, tmp_path):
    """LISTEN_FDS/LISTEN_PID, as the supervisor (or systemd) hands sockets down: served, and
    left in place at exit, since the socket belongs to whoever handed it over."""
    path = str(tmp_path / "inherited.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(path)
    lsock.listen(16)
    script = f"LISTEN_PID=$$ LISTEN_FDS=1 exec {APPSERVER} -b unix:/nonexistent/x.sock " \
             f"{module('mod_v1')}"
    fd = lsock.fileno()
    p = procs.start(["/bin/sh", "-c", script], name="appserver", close_fds=False,
                    preexec_fn=lambda: os.dup2(fd, 3))
    wait_until(lambda: "serving (" in open(p.log_path).read(), what="serving")
    assert "1 socket(s) from the supervisor" in open(p.log_path).read()
    assert request(path, "/")[2] == b"v1\n"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 0
    assert os.path.exists(path)
    lsock.close()


def test_error_logfile_level_and_usr1_reopen(procs, tmp_path):
    errlog = tmp_path / "error.log"
    sock = str(tmp_path / "app.sock")
    p = procs.start([APPSERVER, "-b", "unix:" + sock, "--error-logfile", str(errlog),
                     "--log-level", "warn", "--log-json", module("mod_v1")], name="appserver")
    wait_until(lambda: unix_open(sock), what="socket")
    assert request(sock, "/fail")[0] == 500
    wait_until(lambda: errlog.exists() and "on fire" in errlog.read_text(), what="error line")
    text = errlog.read_text()
    assert '"level"' in text and "listening" not in text  # JSON lines; info filtered out
    os.rename(errlog, tmp_path / "error.log.1")
    p.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    request(sock, "/fail")
    wait_until(lambda: errlog.exists() and "on fire" in errlog.read_text(), what="reopened log")


def test_master_stopped_and_continued_does_not_blame_its_workers(procs, tmp_path):
    """SIGSTOP of the whole appserver for longer than --timeout, then SIGCONT (a suspended
    VM, a debugger, `kill -STOP`): the master did not run either, so the silence is not the
    workers' fault and none of them is killed."""
    app = start(procs, tmp_path, [module("mod_v1")], "-t", "2", workers=2)
    wait_until(lambda: len(children(app.proc.pid)) == 2, what="two workers")
    pids = [app.proc.pid] + children(app.proc.pid)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(3.5)  # the drill itself: stopped for longer than the timeout
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    app.wait_log(r"master did not run for \d+ ms")
    for _ in range(20):
        assert app.get("/")[0] == 200
    assert sorted(children(app.proc.pid)) == sorted(pids[1:]), app.log()
    assert "timed out" not in app.log()
