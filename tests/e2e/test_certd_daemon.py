"""certd as a daemon and under signals: config reload on SIGHUP, renewals with their hooks
only after a change, backoff while Pebble is down, SIGTERM and SIGKILL at any point mid
issuance (never a torn certificate and key, no challenge file left), and a renewal the real
edge serves without a failed request."""
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

from hearthkit.certd import (CERTD, EXIT_FAIL, EXIT_NOTHING, EXIT_OK, cert_serial, cert_text,
                             certd_args, certd_config, challenge_files, no_sanitizer_report,
                             pubkey_of_cert, pubkey_of_key, run)
from hearthkit.edge import start_edge
from hearthkit.ports import free_port
from hearthkit.procs import wait_until


def test_daemon_config_reload_on_hup(pebble, tmp_path, procs):
    state = tmp_path / "state"
    cfg = tmp_path / "hearth.yaml"
    head = certd_config(pebble, state) + """sites:
  - name: hup-a.example.com
    tls: acme
  - name: plain.example.com
    tls: off
  - name: dev.localhost
    tls: internal
"""
    cfg.write_text(head)
    d = procs.start([CERTD, "-c", str(cfg), "--daemon"], name="certd-hup")
    certs = state / "certs"
    wait_until(lambda: (certs / "hup-a.example.com" / "fullchain.pem").exists(), timeout=15,
               what="the configured site's certificate")
    assert not (certs / "plain.example.com").exists()
    wait_until(lambda: (certs / "dev.localhost" / "fullchain.pem").exists(), timeout=5,
               what="the internal site's certificate")
    cfg.write_text(head + "  - name: hup-b.example.com\n    tls: acme\n")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: (certs / "hup-b.example.com" / "fullchain.pem").exists(), timeout=15,
               what="the site added before SIGHUP")
    # an alias added to an existing site is issued at once, not at the next renewal
    before = cert_serial(certs / "hup-a.example.com" / "cert.pem")
    cfg.write_text(head.replace("  - name: hup-a.example.com\n",
                                "  - name: hup-a.example.com\n    aliases: [www.hup-a.example.com]\n"))
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: "DNS:www.hup-a.example.com" in cert_text(certs / "hup-a.example.com" /
                                                                "cert.pem"),
               timeout=15, what="the alias added before SIGHUP")
    assert cert_serial(certs / "hup-a.example.com" / "cert.pem") != before
    assert d.poll() is None
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=5) == 0
    no_sanitizer_report(procs.log(d))


def hook_lines(path):
    return path.read_text().split() if path.exists() else []


def test_daemon_renews_and_reloads_only_after_change(make_pebble, tmp_path, procs):
    p = make_pebble(validity=9)
    hooks = tmp_path / "hooks"
    live = tmp_path / "certs" / "d.example.com"
    # the "edge": a process that records each SIGHUP, reached through its pidfile
    edge_log = tmp_path / "sighups"
    edge_ready = tmp_path / "fake-edge-ready"
    edge = procs.start([sys.executable, "-c", (
        "import signal, time, sys\n"
        f"signal.signal(signal.SIGHUP, lambda *a: open('{edge_log}', 'a').write('hup\\n'))\n"
        f"open('{edge_ready}', 'w').close()\n"
        "while True: time.sleep(0.1)\n")], name="fake-edge")
    # a SIGHUP before its handler is in place would end it (the default action): under load
    # Python's start can take longer than the first issuance
    wait_until(edge_ready.exists, what="the fake edge's SIGHUP handler")
    pidfile = tmp_path / "edge.pid"
    pidfile.write_text(f"{edge.pid}\n")
    # and the supervisor's notify socket, where HEARTH_RELOAD=edge arrives
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    d = procs.start(certd_args(p, tmp_path, "--daemon", "-d", "d.example.com",
                               "--check-interval", "1s", "--reload-pidfile", str(pidfile),
                               "--deploy-hook",
                               f"openssl x509 -noout -serial -in {live}/cert.pem >> {hooks}"),
                    name="certd-daemon", env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    wait_until(lambda: len(hook_lines(hooks)) >= 1, timeout=15, what="first issuance")
    first = cert_serial(live / "cert.pem")
    # 9 s certificates: due once less than 3 s are left, i.e. about 6 s after issuance
    wait_until(lambda: cert_serial(live / "cert.pem") != first, timeout=15, what="renewal")
    wait_until(lambda: len(hook_lines(hooks)) >= 2, timeout=5, what="deploy hook")
    assert d.poll() is None
    d.send_signal(signal.SIGTERM)  # stop first, so every count below is final
    assert d.wait(timeout=5) == 0
    lines = hook_lines(hooks)
    assert len(lines) == len(set(lines)), "a reload without a new certificate"
    wait_until(lambda: edge_log.exists() and edge_log.read_text().count("hup") == len(lines),
               timeout=2, what="one SIGHUP per new certificate")
    messages = []
    while True:
        try:
            messages.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    assert messages[0] == "READY=1"
    assert messages.count("HEARTH_RELOAD=edge") == len(lines)
    assert pubkey_of_cert(live / "cert.pem") == pubkey_of_key(live / "privkey.pem")
    no_sanitizer_report(procs.log(d))


def test_daemon_backs_off_while_pebble_is_down(make_pebble, tmp_path, procs):
    p = make_pebble(validity=8)
    live = tmp_path / "certs" / "down.example.com"
    assert run(certd_args(p, tmp_path, "--issue", "down.example.com"), tmp_path).returncode == 0
    old = (live / "fullchain.pem").read_bytes()
    p.stop_ca()
    d = procs.start(certd_args(p, tmp_path, "--daemon", "--check-interval", "1s",
                               "--retry-min", "300ms", "--retry-max", "2s"), name="certd-down")
    wait_until(lambda: procs.log(d).count("failed; next try") >= 3, timeout=20,
               what="failed attempts")
    log = procs.log(d)
    delays = [float(x.split("next try in ")[1].split(" s")[0])
              for x in log.splitlines() if "next try in" in x]
    assert delays[2] > delays[0], delays  # backing off, not a tight loop
    assert (live / "fullchain.pem").read_bytes() == old  # the served cert is untouched
    p.start_ca()
    wait_until(lambda: (live / "fullchain.pem").read_bytes() != old, timeout=15,
               what="renewal after Pebble came back")
    assert pubkey_of_cert(live / "cert.pem") == pubkey_of_key(live / "privkey.pem")
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=5) == 0
    no_sanitizer_report(procs.log(d))


def test_sigterm_mid_issuance_cleans_up(pebble, tmp_path):
    args = certd_args(pebble, tmp_path, "--issue", "term.example.com", "--force")
    live = tmp_path / "certs" / "term.example.com"
    rng = random.Random(99)
    for _ in range(6):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
        no_sanitizer_report(err)
        # -SIGTERM: it arrived before certd started listening for it (nothing written yet)
        assert proc.returncode in (EXIT_OK, EXIT_FAIL, -signal.SIGTERM)
        assert challenge_files(pebble) == []
        if live.exists():
            assert pubkey_of_cert(live / "fullchain.pem") == pubkey_of_key(live / "privkey.pem")


def test_sigkill_at_random_points_never_tears_the_pair(pebble, tmp_path):
    args = certd_args(pebble, tmp_path, "--issue", "kill.example.com", "--force")
    live = tmp_path / "certs" / "kill.example.com"
    rng = random.Random(1234)
    for _ in range(10):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if live.exists():
            assert pubkey_of_cert(live / "fullchain.pem") == pubkey_of_key(live / "privkey.pem")
            assert os.stat(live / "privkey.pem").st_mode & 0o777 == 0o600
    r = run(args, tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert pubkey_of_cert(live / "fullchain.pem") == pubkey_of_key(live / "privkey.pem")
    versions = [v for v in os.listdir(tmp_path / "certs" / ".archive" / "kill.example.com")]
    assert all(not v.endswith(".tmp") for v in versions)


def test_sigkilled_run_leaves_no_challenge_file_behind(make_pebble, tmp_path):
    p = make_pebble()
    args = certd_args(p, tmp_path, "--issue", "orphan.example.com")
    assert run(args, tmp_path).returncode == EXIT_OK
    # the challenge server goes silent: a validation now hangs with certd's file in place
    p.challenge_server.terminate()
    p.challenge_server.wait()
    silent = socket.create_server(("127.0.0.1", p.http_port))
    # another ACME client's file in the same webroot (another account's key authorization)
    other = p.webroot / ".well-known" / "acme-challenge" / "OtherClientToken0123456789"
    other.write_text("OtherClientToken0123456789.someone-elses-thumbprint")
    # a name this account has no valid authorization for yet, so a challenge is needed
    proc = subprocess.Popen(certd_args(p, tmp_path, "--issue", "orphan2.example.com"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: len(challenge_files(p)) == 2, what="certd's challenge file")
    proc.kill()
    proc.wait()
    assert len(challenge_files(p)) == 2  # killed: it could not remove its file
    # the next run (nothing due) removes the orphan, and only that
    r = run(args, tmp_path)
    assert r.returncode == EXIT_NOTHING, r.stderr
    assert "removed 1 challenge file(s) left by an earlier run" in r.stderr
    assert challenge_files(p) == [other.name]
    silent.close()


def test_daemon_renewal_served_by_edge_without_failures(make_pebble, tmp_path, procs):
    p = make_pebble(challenge_server=False, validity=10)
    name = "edge.example.com"
    # the real edge on Pebble's HTTP port, serving the challenge directory
    edge = start_edge(procs, "--acme-webroot", str(p.webroot), "--server-name", name,
                      http=p.http_port, https=None, name="edge-http")
    live = tmp_path / "certs" / name
    assert run(certd_args(p, tmp_path, "--issue", name), tmp_path).returncode == EXIT_OK
    edge.proc.stop(timeout=5)
    https = free_port()
    edge = start_edge(procs, "--acme-webroot", str(p.webroot), "--server-name", name,
                      "--cert", str(live / "fullchain.pem"), "--key", str(live / "privkey.pem"),
                      http=p.http_port, https=https)
    pidfile = tmp_path / "edge.pid"
    pidfile.write_text(f"{edge.proc.pid}\n")
    root = tmp_path / "root.pem"
    root.write_bytes(p.root_pem())
    ctx = ssl.create_default_context(cafile=str(root))
    served, failures, stop_flag = [], [], threading.Event()

    def client_loop():
        while not stop_flag.is_set():
            try:
                with socket.create_connection(("127.0.0.1", https), timeout=5) as raw:
                    with ctx.wrap_socket(raw, server_hostname=name) as tls:
                        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\n"
                                    "Connection: close\r\n\r\n".encode())
                        assert tls.recv(12).startswith(b"HTTP/1.1 ")
                        served.append(tls.getpeercert()["serialNumber"].lower())
            except Exception as e:  # any failure at all is what this test looks for
                failures.append(repr(e))
            time.sleep(0.02)

    t = threading.Thread(target=client_loop)
    t.start()
    try:
        first = cert_serial(live / "cert.pem").lower()
        procs.start(certd_args(p, tmp_path, "--daemon", "--check-interval", "1s",
                               "--reload-pidfile", str(pidfile)), name="certd-edge")
        wait_until(lambda: served and served[-1].lstrip("0") != first.lstrip("0"), timeout=20,
                   what="the edge serving the renewed certificate")
    finally:
        stop_flag.set()
        t.join(timeout=10)
    assert failures == [], failures[:3]
    assert len(served) > 20
    assert served[-1].lstrip("0") == cert_serial(live / "cert.pem").lower().lstrip("0")
