"""certd against a CA that misbehaves: malformed JSON for a directory, Retry-After and server
errors (retried, or given up past the time limit), bad replies in the middle of an order and an
unlinked chain (nothing written), and ARI windows that decide a renewal; a fault proxy
(tests/hearthkit/faultproxy.py) in front of Pebble injects the faults."""
import http.server
import json
import time
import urllib.error
import urllib.request

import pytest

from hearthkit.certd import (CERTD, EXIT_FAIL, EXIT_NOTHING, EXIT_OK, cert_serial, cert_text,
                             certd_args, challenge_files, run)
from hearthkit.faultproxy import fault_proxy
from hearthkit.upstreams import Answer, serve_https


class BadCA(Answer):
    """An 'ACME server' that answers with broken JSON."""
    body = b'{"newNonce": "https://x", "newAccount": '


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
    serial = bytes.fromhex(cert_serial(cert).rjust(2, "0"))
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
        first = cert_serial(live / "cert.pem")
        now = time.time()
        handler.window = (now + 3000, now + 3500)  # lifetime says not due, ARI agrees
        assert run(args + ["--renew"], tmp_path).returncode == EXIT_NOTHING
        assert handler.asked[-1] == ari_cert_id(live / "cert.pem")
        handler.window = (now - 100, now - 50)  # the CA wants it renewed now
        r = run(args + ["--renew"], tmp_path)
        assert r.returncode == EXIT_OK, r.stderr
        assert cert_serial(live / "cert.pem") != first


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
