"""The edge's TLS: old protocol versions refused, SNI with ECDSA and RSA certificates side by
side, ALPN, session resumption across workers, testssl.sh's verdict, certificates reloaded on
SIGHUP under load (a broken one refused), and a certd-managed certificate taken once it
exists."""
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from hearthkit import binary
from hearthkit.certs import serial_of
from hearthkit.clients import (client_ctx, handshake_fails, handshake_serial, https_get, raw,
                               s_client, status_of)
from hearthkit.ports import free_port, port_open
from hearthkit.procs import wait_until

EDGE = binary("edge", "edge")


def test_tls_old_versions_refused_new_ones_work(start_edge, pki):
    e = start_edge()
    for flag in ("-tls1", "-tls1_1"):
        r = s_client(e.https, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
        assert b"Cipher is (NONE)" in r.stdout or r.returncode != 0, flag
    for flag, name in (("-tls1_2", b"TLSv1.2"), ("-tls1_3", b"TLSv1.3")):
        r = s_client(e.https, flag, "-CAfile", pki["ca"], "-verify_return_error")
        assert r.returncode == 0 and name in r.stdout, r.stdout[-500:]


def test_tls_sni_picks_site_and_ecdsa_rsa_side_by_side(start_edge, pki, site):
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--cert", pki["a_rsa"][0], "--key", pki["a_rsa"][1], "--static", f"/={site['www']}",
             "--server-name", "b.test", "--cert", pki["b_ec"][0], "--key", pki["b_ec"][1],
             "--static", f"/={site['www']}/sub"]
    e = start_edge(sites=sites)
    for name, serial in (("a.test", 1001), ("b.test", 2001)):
        with socket.create_connection(("127.0.0.1", e.https)) as s:
            with client_ctx(pki["ca"]).wrap_socket(s, server_hostname=name) as t:
                assert serial_of(ssl.DER_cert_to_PEM_cert(t.getpeercert(True)).encode()) == serial
    # a client that only takes RSA gets the RSA certificate of the same site
    r = s_client(e.https, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-showcerts")
    assert serial_of(r.stdout) == 1002
    r, body = https_get(e, pki["ca"], "/", host="b.test")
    assert body == b"<h1>sub</h1>\n"


def test_tls_alpn_h2_then_http11(start_edge, pki):
    """h2 when the client offers it (RFC 9113 3.2), http/1.1 when that is all it offers."""
    e = start_edge()
    for offer, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        ctx = client_ctx(pki["ca"])
        ctx.set_alpn_protocols(offer)
        with socket.create_connection(("127.0.0.1", e.https)) as s:
            with ctx.wrap_socket(s, server_hostname="a.test") as t:
                assert t.selected_alpn_protocol() == chosen


def test_tls_session_resumption_across_workers(start_edge, tmp_path):
    e = start_edge(workers="2")
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


def test_sighup_reload_under_load_and_broken_cert_refused(start_edge, pki, site, tmp_path):
    import shutil
    crt, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki["a_ec"][0], crt)
    shutil.copy(pki["a_ec"][1], key)
    sites = ["--server-name", "a.test", "--cert", str(crt), "--key", str(key),
             "--static", f"/={site['www']}"]
    e = start_edge(sites=sites, workers="2")
    ctx = client_ctx(pki["ca"])
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
    assert handshake_fails(sp, "a.test", client_ctx(pki["ca"]))
    assert handshake_fails(sp, "other.test", client_ctx(pki["ca"]))
    assert time.monotonic() - t0 < 3
    store_version(certs, "a.test", 1, *pki["a_ec"])
    p.send_signal(signal.SIGHUP)
    wait_until(lambda: not handshake_fails(sp, "a.test", client_ctx(pki["ca"])), timeout=5,
               what="the certificate after SIGHUP")
    assert handshake_serial(sp, "a.test", client_ctx(pki["ca"])) == 1001
    resp = raw(hp, b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert status_of(resp) == 301 and f"https://a.test:{sp}/x".encode() in resp
    store_version(certs, "a.test", 2, *pki["a_ec2"])
    p.send_signal(signal.SIGHUP)
    wait_until(lambda: handshake_serial(sp, "a.test", client_ctx(pki["ca"])) == 1003, timeout=5)
    # a version whose key is not the certificate's: logged, the running one stays
    store_version(certs, "a.test", 3, pki["a_ec"][0], pki["b_ec"][1])
    p.send_signal(signal.SIGHUP)
    wait_until(lambda: "keeping the running certificate" in procs.log(p), timeout=5)
    assert handshake_serial(sp, "a.test", client_ctx(pki["ca"])) == 1003
    assert p.poll() is None


def test_testssl_reports_no_weakness(start_edge, pki, site):
    import shutil
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if not exe:
        pytest.skip("testssl.sh is not installed")
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--cert", pki["a_rsa"][0], "--key", pki["a_rsa"][1], "--static", f"/={site['www']}"]
    e = start_edge(sites=sites)
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
