"""The edge's reload as its supervisor sees it: with several workers, the master reports a
reload done (READY=1 after RELOADING=1 on NOTIFY_SOCKET) only once every worker has reloaded,
so no handshake after that meets a worker still serving the old sites."""
import signal
import shutil
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from hearthkit import binary
from hearthkit.certs import make_test_pki
from hearthkit.ports import free_port, port_open
from hearthkit.procs import wait_until


EDGE = binary("edge", "edge")
WORKERS = 8
FILLER_SITES = 60
HANDSHAKES = 64


def handshake_ok(port, host, ctx):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=host):
                return True
    except (ssl.SSLError, ConnectionError):
        return False


def notified(srv, what):
    """The next message on the notify socket carries what (the master speaks for its workers)."""
    msg = srv.recv(4096)
    assert what.encode() in msg, msg
    return msg


def test_reload_reported_only_after_every_worker_reloaded(procs, tmp_path):
    pki = make_test_pki(tmp_path / "pki", "DNS:a.test")
    certs = tmp_path / "state" / "certs"
    certs.mkdir(parents=True)
    www = tmp_path / "www"
    www.mkdir()
    sp = free_port()
    # Sites enough that a worker's reload takes a while (each loads its certificate), and
    # workers enough that some are still at it when a too early READY=1 comes.
    filler = "".join(f"""  - name: s{i}.test
    tls: [{{cert: {pki / 'cert.pem'}, key: {pki / 'key.pem'}}}]
    static: {{prefix: /, root: {www}}}
""" for i in range(FILLER_SITES))
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"""
state_dir: {tmp_path}/state
edge:
  workers: {WORKERS}
  http: ["127.0.0.1:{free_port()}"]
  https: ["127.0.0.1:{sp}"]
sites:
  - name: a.test
    tls: acme
    static: {{prefix: /, root: {www}}}
{filler}""")
    notify = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(notify))
    srv.settimeout(15)
    p = procs.start([EDGE, "--config", str(cfg)], env={"NOTIFY_SOCKET": str(notify)})
    notified(srv, "READY=1")
    wait_until(lambda: port_open(sp) or p.poll() is not None)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    # no certificate yet: every worker fails the handshake for the name
    assert not handshake_ok(sp, "a.test", ctx)
    # certd's layout: CERT_DIR/NAME, a directory with fullchain.pem and privkey.pem
    (certs / "a.test").mkdir()
    shutil.copy(pki / "cert.pem", certs / "a.test" / "fullchain.pem")
    shutil.copy(pki / "key.pem", certs / "a.test" / "privkey.pem")
    p.send_signal(signal.SIGHUP)
    notified(srv, "RELOADING=1")
    notified(srv, "READY=1")
    # right after the reload is reported, every connection, whichever worker takes it, gets
    # the certificate (many at once, so that every worker takes some)
    with ThreadPoolExecutor(16) as pool:
        ok = list(pool.map(lambda _: handshake_ok(sp, "a.test", ctx), range(HANDSHAKES)))
    assert all(ok), f"{ok.count(False)} of {HANDSHAKES} handshakes failed after READY=1"
    assert p.poll() is None, procs.log(p)
    srv.close()
