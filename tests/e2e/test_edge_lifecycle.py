"""The edge's life as a process: listeners (IPv6, sockets inherited as systemd hands them
down), SIGTERM finishing what is in flight, access logs and their reopening on SIGUSR1, the
config file, dropping privileges, sd_notify, restarts on an inherited socket that answer every
connection, and workers that stop with a killed master."""
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
from hearthkit.clients import client_ctx, curl, handshake_serial, https_get, raw, status_of
from hearthkit.edge import Edge
from hearthkit.ports import free_port, port_open
from hearthkit.procs import pid_alive, wait_until

EDGE = binary("edge", "edge")


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


APPSERVER = binary("appserver", "appserver")


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
