"""certd end to end against Pebble (Let's Encrypt's ACME test server), with
pebble-challtestsrv as its DNS answering 127.0.0.1 and nonce rejection on, all on loopback."""
import http.server
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from hearthkit import binary
from hearthkit.certs import make_test_pki
from hearthkit.ports import free_port
from hearthkit.procs import wait_until
from hearthkit.certs import openssl
from hearthkit.edge import start_edge
from hearthkit.faultproxy import fault_proxy
from hearthkit.pebble import Pebble
from hearthkit.upstreams import serve_https

CERTD = binary("certd", "certd")
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOTHING = 0, 1, 2, 3


def no_sanitizer_report(text):
    # in an -Db_sanitize=address,undefined build, any report fails the test
    assert "runtime error:" not in text and "Sanitizer" not in text, text


def run(args, cwd, timeout=60):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    no_sanitizer_report(r.stderr)
    return r


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A throwaway CA and a 127.0.0.1/localhost certificate for Pebble's own API (the Debian
    package ships no test certificate); certd trusts the CA through --ca-bundle."""
    return make_test_pki(tmp_path_factory.mktemp("pebble-tls"), "DNS:localhost",
                         "IP:127.0.0.1")


@pytest.fixture(scope="module")
def pebble(tmp_path_factory, tls_files):
    """Pebble for the module: nonce rejection on, the real edge serving its challenges."""
    p = Pebble(tmp_path_factory.mktemp("pebble"), challenges="edge", tls=tls_files,
               validity=3600)
    yield p
    p.stop()


@pytest.fixture
def make_pebble(tmp_path, tls_files):
    """make_pebble(challenge_server=True, validity=3600, eab=None): a Pebble of the test's own;
    without challenge_server, the test serves Pebble's challenges (on p.http_port) itself."""
    started = []

    def make(challenge_server=True, validity=3600, **kw):
        p = Pebble(tmp_path / f"pebble{len(started)}", tls=tls_files, validity=validity,
                   challenges="edge" if challenge_server else None, **kw)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


def certd_args(pebble, state, *extra, server=None):
    """certd's flags for pebble (or, with server, a directory URL in front of it)."""
    return [CERTD, "--server", server or pebble.directory, "--ca-bundle", pebble.ca,
            "--webroot", str(pebble.webroot), "--cert-dir", str(state / "certs"),
            "--agree-tos", "--email", "admin@example.com", *extra]


def cert_text(path):
    return openssl("x509", "-in", path, "-noout", "-text", text=True).stdout


def serial_of(path):
    return openssl("x509", "-in", path, "-noout", "-serial", text=True).stdout.strip().split("=")[1]


def pubkey_of_cert(path):
    return openssl("x509", "-in", path, "-noout", "-pubkey", text=True).stdout


def pubkey_of_key(path):
    return openssl("pkey", "-in", path, "-pubout", text=True).stdout


def challenge_files(pebble):
    d = pebble.webroot / ".well-known" / "acme-challenge"
    return [f for f in os.listdir(d) if not f.startswith(".")] if d.exists() else []


def test_issue_two_names(pebble, tmp_path):
    r = run(certd_args(pebble, tmp_path, "--issue", "one.example.com", "-d", "two.example.com"),
            tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    live = tmp_path / "certs" / "one.example.com"
    full, key = live / "fullchain.pem", live / "privkey.pem"
    # the chain leads to Pebble's root
    root = tmp_path / "root.pem"
    root.write_bytes(pebble.root_pem())
    v = subprocess.run(["openssl", "verify", "-CAfile", str(root), "-untrusted",
                        str(live / "chain.pem"), str(live / "cert.pem")], capture_output=True,
                       text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    # the key is the certificate's, both names are in it, the key is private
    assert pubkey_of_cert(full) == pubkey_of_key(key)
    text = cert_text(full)
    assert "DNS:one.example.com" in text and "DNS:two.example.com" in text
    assert "id-ecPublicKey" in text and "prime256v1" in text
    assert os.stat(key).st_mode & 0o777 == 0o600
    accounts = list((tmp_path / "accounts").rglob("account.key"))
    assert len(accounts) == 1 and os.stat(accounts[0]).st_mode & 0o777 == 0o600
    assert challenge_files(pebble) == []


def test_bad_nonces_are_retried(pebble, tmp_path):
    # Pebble rejects 20% of good nonces: over a few issuances some badNonce is certain
    # (0.8^60 < 1e-5), and each one must have been retried, since every issuance succeeds.
    seen = 0
    for _ in range(5):
        r = run(certd_args(pebble, tmp_path, "--issue", "nonce.example.com", "--force",
                           "--log-level", "debug"), tmp_path)
        assert r.returncode == EXIT_OK, r.stderr
        seen += r.stderr.count("badNonce, retrying")
    assert seen > 0


def test_nothing_to_do_list_renew_keep_previous(pebble, tmp_path):
    args = certd_args(pebble, tmp_path)
    assert run(args + ["--issue", "list.example.com"], tmp_path).returncode == EXIT_OK
    r = run(args + ["--issue", "list.example.com"], tmp_path)
    assert r.returncode == EXIT_NOTHING, r.stderr
    assert "not due" in r.stderr
    r = run(args + ["--list"], tmp_path)
    assert r.returncode == EXIT_OK
    assert "list.example.com" in r.stdout and "ec256" in r.stdout and "days left" in r.stdout
    assert run(args + ["--renew"], tmp_path).returncode == EXIT_NOTHING
    live = tmp_path / "certs" / "list.example.com"
    before = serial_of(live / "cert.pem")
    r = run(args + ["--renew", "--force"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert serial_of(live / "cert.pem") != before
    versions = os.listdir(tmp_path / "certs" / ".archive" / "list.example.com")
    assert sorted(versions) == ["1", "2"]  # the previous version is kept


@pytest.mark.parametrize("key_type,marker", [("ec384", "secp384r1"),
                                             ("rsa2048", "(2048 bit)")])
def test_key_types(pebble, tmp_path, key_type, marker):
    r = run(certd_args(pebble, tmp_path, "--issue", f"{key_type}.example.com", "--key-type",
                       key_type), tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    live = tmp_path / "certs" / f"{key_type}.example.com"
    assert marker in cert_text(live / "cert.pem")
    assert pubkey_of_cert(live / "cert.pem") == pubkey_of_key(live / "privkey.pem")


@pytest.mark.parametrize("args", [[], ["--bogus"], ["--issue", "a.example", "--key-type", "dsa"],
                                  ["--issue", "a.example", "--list"], ["--issue", "../etc"],
                                  ["--renew", "--check-interval", "soon"],
                                  ["--issue", "a.example", "--eab-kid", "k"]])
def test_usage_errors(tmp_path, args):
    r = run([CERTD, "--cert-dir", str(tmp_path / "certs"), *args], tmp_path)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert not (tmp_path / "certs" / ".archive").exists()


def test_ca_tls_is_verified(pebble, tmp_path):
    args = [a for a in certd_args(pebble, tmp_path, "--issue", "tls.example.com")]
    i = args.index("--ca-bundle")
    del args[i:i + 2]
    r = run(args, tmp_path)
    assert r.returncode == EXIT_FAIL
    assert "certificate" in r.stderr.lower()
    assert not (tmp_path / "certs" / "tls.example.com").exists()


def test_failed_validation_removes_challenges(make_pebble, tmp_path):
    p = make_pebble()
    p.challenge_server.terminate()  # no challenge server: validation fails
    p.challenge_server.wait()
    r = run(certd_args(p, tmp_path, "--issue", "fail.example.com"), tmp_path)
    assert r.returncode == EXIT_FAIL
    assert "connection" in r.stderr
    assert challenge_files(p) == []
    assert not (tmp_path / "certs" / "fail.example.com").exists()


class BadCA(http.server.BaseHTTPRequestHandler):
    """An 'ACME server' that answers with broken JSON."""
    body = b'{"newNonce": "https://x", "newAccount": '

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("body", [b'{"newNonce": "https://x", "newAccount": ',
                                  b'{"newNonce": 5}', b'[]', b'\x00\xff'])
def test_malformed_json_from_ca(tls_files, tmp_path, body):
    with serve_https(tls_files, type("H", (BadCA,), {"body": body})) as srv:
        r = run([CERTD, "--server", f"{srv.url}/dir",
                 "--ca-bundle", str(tls_files / "ca.pem"), "--webroot", str(tmp_path / "www"),
                 "--cert-dir", str(tmp_path / "certs"), "--agree-tos", "--issue",
                 "bad.example.com"], tmp_path, timeout=20)
    assert r.returncode == EXIT_FAIL, r.stderr
    assert "JSON" in r.stderr or "not an ACME directory" in r.stderr
    assert not (tmp_path / "accounts").exists() or not any((tmp_path / "accounts").rglob("*.key"))
    assert not (tmp_path / "certs" / "bad.example.com").exists()


def test_dry_run_writes_nothing(pebble, tmp_path):
    r = run(certd_args(pebble, tmp_path, "--issue", "dry.example.com", "--dry-run"), tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert "dry run" in r.stderr
    assert not (tmp_path / "certs" / "dry.example.com").exists()


def test_revoke(pebble, tmp_path):
    args = certd_args(pebble, tmp_path)
    assert run(args + ["--issue", "revoke.example.com"], tmp_path).returncode == EXIT_OK
    serial = serial_of(tmp_path / "certs" / "revoke.example.com" / "cert.pem").lower()
    assert pebble.cert_status(serial)["Status"] == "Valid"
    r = run(args + ["--revoke", "revoke.example.com", "--reason", "4"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    status = pebble.cert_status(serial)
    assert status["Status"] == "Revoked" and status["Reason"] == 4
    assert "REVOKED" in run(args + ["--list"], tmp_path).stdout


def test_account_key_rollover_then_issue(pebble, tmp_path):
    args = certd_args(pebble, tmp_path)
    assert run(args + ["--issue", "roll.example.com"], tmp_path).returncode == EXIT_OK
    key = next((tmp_path / "accounts").rglob("account.key"))
    old = key.read_text()
    r = run(args + ["--rollover-account-key"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert key.read_text() != old and os.stat(key).st_mode & 0o777 == 0o600
    r = run(args + ["--issue", "roll.example.com", "--force"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr


def test_interrupted_rollover_is_finished(pebble, tmp_path):
    args = certd_args(pebble, tmp_path)
    assert run(args + ["--issue", "cut.example.com"], tmp_path).returncode == EXIT_OK
    key = next((tmp_path / "accounts").rglob("account.key"))
    assert run(args + ["--rollover-account-key"], tmp_path).returncode == EXIT_OK
    new = key.read_text()
    # as if certd died after the CA switched keys but before its own rename
    os.rename(key, key.with_name("account.key.next"))
    os.rename(key.with_name("account.key.prev"), key)
    r = run(args + ["--issue", "cut.example.com", "--force"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert "finished an interrupted key rollover" in r.stderr
    assert key.read_text() == new and not key.with_name("account.key.next").exists()
    # and a stale .next the CA never saw is dropped
    key.with_name("account.key.next").write_text(key.with_name("account.key.prev").read_text())
    r = run(args + ["--issue", "cut.example.com", "--force"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert "never switched" in r.stderr and key.read_text() == new


def test_external_account_binding(make_pebble, tmp_path):
    hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    p = make_pebble(eab={"kid-1": hmac})
    r = run(certd_args(p, tmp_path, "--issue", "eab.example.com"), tmp_path)
    assert r.returncode == EXIT_FAIL and "external account" in r.stderr
    r = run(certd_args(p, tmp_path, "--issue", "eab.example.com", "--eab-kid", "kid-1",
                       "--eab-hmac-key", hmac), tmp_path)
    assert r.returncode == EXIT_OK, r.stderr


def test_config_file(pebble, tmp_path):
    state = tmp_path / "state"
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"""
state_dir: {state}
certd:
  server: {pebble.directory}
  ca_bundle: {pebble.tls / 'ca.pem'}
  agree_tos: true
  webroot: {pebble.webroot}
  key_type: ec384
sites:
  - name: conf.example.com
    aliases: [www.conf.example.com]
    tls: acme
""")
    r = run([CERTD, "-c", str(cfg), "--issue", "conf.example.com", "-d",
             "www.conf.example.com"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    text = cert_text(state / "certs" / "conf.example.com" / "cert.pem")
    assert "secp384r1" in text and "DNS:www.conf.example.com" in text
    assert run([CERTD, "-c", str(cfg), "--list"], tmp_path).returncode == EXIT_OK
    bad = tmp_path / "bad.yaml"
    bad.write_text("certd:\n  nonsense: 1\n")
    r = run([CERTD, "-c", str(bad), "--list"], tmp_path)
    assert r.returncode == EXIT_USAGE and "nonsense" in r.stderr


class AriProxy(http.server.BaseHTTPRequestHandler):
    """Pebble 2.4 has no ARI: this serves Pebble's directory plus a renewalInfo URL, and
    renewalInfo windows, so certd's feature detection and window handling can be seen."""
    pebble = None
    window = (0, 0)
    asked = []

    def do_GET(self):
        if self.path == "/dir":
            with urllib.request.urlopen(self.pebble.directory, context=self.pebble.ctx) as r:
                d = json.loads(r.read())
            d["renewalInfo"] = f"https://127.0.0.1:{self.server.server_address[1]}/ari/"
            body = json.dumps(d).encode()
        elif self.path.startswith("/ari/"):
            self.asked.append(self.path[5:])
            fmt = "%Y-%m-%dT%H:%M:%SZ"
            start, end = (time.strftime(fmt, time.gmtime(t)) for t in self.window)
            body = json.dumps({"suggestedWindow": {"start": start, "end": end}}).encode()
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def ari_cert_id(cert):
    """RFC 9773 certID: base64url(authority key identifier) "." base64url(serial DER bytes)."""
    import base64
    text = cert_text(cert)
    aki = text.split("Authority Key Identifier:")[1].split("\n")[1].strip()
    aki = bytes.fromhex(aki.replace("keyid:", "").replace(":", ""))
    serial = bytes.fromhex(serial_of(cert).rjust(2, "0"))
    if serial[0] & 0x80:  # DER keeps the integer positive
        serial = b"\0" + serial
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    return f"{b64(aki)}.{b64(serial)}"


def test_ari_window_decides_renewal(pebble, tmp_path):
    handler = type("A", (AriProxy,), {"pebble": pebble, "asked": []})
    with serve_https(pebble.tls, handler) as srv:
        args = certd_args(pebble, tmp_path, server=f"{srv.url}/dir")
        args += ["--account-dir", str(tmp_path / "acct")]
        assert run(args + ["--issue", "ari.example.com"], tmp_path).returncode == EXIT_OK
        live = tmp_path / "certs" / "ari.example.com"
        first = serial_of(live / "cert.pem")
        now = time.time()
        handler.window = (now + 3000, now + 3500)  # lifetime says not due, ARI agrees
        assert run(args + ["--renew"], tmp_path).returncode == EXIT_NOTHING
        assert handler.asked[-1] == ari_cert_id(live / "cert.pem")
        handler.window = (now - 100, now - 50)  # the CA wants it renewed now
        r = run(args + ["--renew"], tmp_path)
        assert r.returncode == EXIT_OK, r.stderr
        assert serial_of(live / "cert.pem") != first


def test_daemon_config_reload_on_hup(pebble, tmp_path, procs):
    state = tmp_path / "state"
    cfg = tmp_path / "hearth.yaml"
    head = f"""
state_dir: {state}
certd:
  server: {pebble.directory}
  ca_bundle: {pebble.tls / 'ca.pem'}
  agree_tos: true
  webroot: {pebble.webroot}
sites:
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
    before = serial_of(certs / "hup-a.example.com" / "cert.pem")
    cfg.write_text(head.replace("  - name: hup-a.example.com\n",
                                "  - name: hup-a.example.com\n    aliases: [www.hup-a.example.com]\n"))
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: "DNS:www.hup-a.example.com" in cert_text(certs / "hup-a.example.com" /
                                                                "cert.pem"),
               timeout=15, what="the alias added before SIGHUP")
    assert serial_of(certs / "hup-a.example.com" / "cert.pem") != before
    assert d.poll() is None
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=5) == 0
    no_sanitizer_report(procs.log(d))


def test_internal_ca(tmp_path):
    certs = tmp_path / "certs"
    args = [CERTD, "--cert-dir", str(certs), "--internal", "--issue", "localhost", "-d",
            "127.0.0.1", "-d", "*.localhost"]
    r = run(args, tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    ca = tmp_path / "internal-ca" / "ca.pem"
    assert os.stat(tmp_path / "internal-ca" / "ca.key").st_mode & 0o777 == 0o600
    live = certs / "localhost"
    text = cert_text(live / "cert.pem")
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text and "DNS:*.localhost" in text
    assert run(args, tmp_path).returncode == EXIT_NOTHING
    # a real TLS handshake: a server with the pair, a client trusting only the internal CA
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(live / "fullchain.pem", live / "privkey.pem")
    client_ctx = ssl.create_default_context(cafile=str(ca))
    for host in ("localhost", "127.0.0.1"):
        with socket.create_server(("127.0.0.1", 0)) as lsock:
            def serve():
                conn, _ = lsock.accept()
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")

            t = threading.Thread(target=serve)
            t.start()
            with socket.create_connection(lsock.getsockname()) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=host) as tls:
                    assert tls.recv(2) == b"ok"
            t.join(timeout=5)
    r = run([CERTD, "--cert-dir", str(certs), "--renew", "--force"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr  # renews from the local CA, no network


def test_retry_after_and_server_errors_are_retried(pebble, tmp_path):
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    with fault_proxy(pebble, {
        "/sign-me-up": [(429, {"Retry-After": when})],  # HTTP-date form
        "/order-plz": [(503, {"Retry-After": "1"}), (503, {"Retry-After": "1"})],
        "/finalize-order/": [(500, {})],  # no Retry-After: backoff
    }) as proxy:
        r = run(certd_args(pebble, tmp_path, "--issue", "retry.example.com",
                           server=proxy.directory), tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert all(not q for q in proxy.faults.values())  # every fault was met and retried
    orders = [t for t, m, p in proxy.seen if m == "POST" and p.startswith("/order-plz")]
    # (more than 3 when Pebble's own badNonce hits the forwarded one)
    assert len(orders) >= 3 and orders[1] - orders[0] >= 0.95 and orders[2] - orders[1] >= 0.95
    accounts = [t for t, m, p in proxy.seen if m == "POST" and p.startswith("/sign-me-up")]
    assert accounts[1] - accounts[0] >= 0.5
    assert "HTTP 503, retrying in 1000 ms" in r.stderr


def test_retry_after_beyond_the_time_limit_gives_up(pebble, tmp_path):
    with fault_proxy(pebble, {"/order-plz": [(429, {"Retry-After": "3600"})]}) as proxy:
        args = certd_args(pebble, tmp_path, "--issue", "late.example.com", "--timeout", "5s",
                          server=proxy.directory)
        start = time.monotonic()
        r = run(args, tmp_path)
    assert r.returncode == EXIT_FAIL and time.monotonic() - start < 5
    assert "time limit" in r.stderr
    assert not (tmp_path / "certs" / "late.example.com").exists()


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("path,fault,message", [
    ("/finalize-order/", (200, JSON, b'{"status": "valid", "certificate": '), "malformed JSON"),
    ("/finalize-order/", (200, JSON, b'{"status": "valid"}'), "no certificate URL"),
    ("/finalize-order/", (200, JSON, b'{"status": "bogus"}'), "status bogus"),
    ("/authZ/", (200, JSON, b'[1, 2, 3]'), "missing"),
    ("/certZ/", (200, {"Content-Type": "application/pem-certificate-chain"},
                 b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
     "not a list of PEM certificates"),
])
def test_bad_replies_mid_order_write_nothing(pebble, tmp_path, path, fault, message):
    with fault_proxy(pebble, {path: [fault]}) as proxy:
        r = run(certd_args(pebble, tmp_path, "--issue", "bad-reply.example.com",
                           server=proxy.directory), tmp_path)
    assert r.returncode == EXIT_FAIL, r.stderr
    assert message in r.stderr
    assert not (tmp_path / "certs" / "bad-reply.example.com").exists()
    assert challenge_files(pebble) == []


def test_unlinked_chain_is_refused(pebble, tmp_path):
    tls = pebble.tls  # two real certificates in the wrong order: the CA first
    body = (tls / "ca.pem").read_bytes() + (tls / "cert.pem").read_bytes()
    fault = (200, {"Content-Type": "application/pem-certificate-chain"}, body)
    with fault_proxy(pebble, {"/certZ/": [fault]}) as proxy:
        r = run(certd_args(pebble, tmp_path, "--issue", "unlinked.example.com",
                           server=proxy.directory), tmp_path)
    assert r.returncode == EXIT_FAIL and "each issued by the next" in r.stderr
    assert not (tmp_path / "certs" / "unlinked.example.com").exists()


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
    first = serial_of(live / "cert.pem")
    # 9 s certificates: due once less than 3 s are left, i.e. about 6 s after issuance
    wait_until(lambda: serial_of(live / "cert.pem") != first, timeout=15, what="renewal")
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
        first = serial_of(live / "cert.pem").lower()
        procs.start(certd_args(p, tmp_path, "--daemon", "--check-interval", "1s",
                               "--reload-pidfile", str(pidfile)), name="certd-edge")
        wait_until(lambda: served and served[-1].lstrip("0") != first.lstrip("0"), timeout=20,
                   what="the edge serving the renewed certificate")
    finally:
        stop_flag.set()
        t.join(timeout=10)
    assert failures == [], failures[:3]
    assert len(served) > 20
    assert served[-1].lstrip("0") == serial_of(live / "cert.pem").lower().lstrip("0")
