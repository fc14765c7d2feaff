"""certd end to end against Pebble (Let's Encrypt's ACME test server), with
pebble-challtestsrv as its DNS answering 127.0.0.1 and nonce rejection on, all on loopback
(the pebble fixtures are conftest's, certd's helpers tests/hearthkit/certd.py's). This file:
issuance, key types, usage errors, the CA's TLS checked, dry runs, revocation, account key
rollover, EAB, the config file, the internal CA; test_certd_faults and test_certd_daemon hold
the rest."""
import os
import socket
import ssl
import subprocess
import threading

import pytest

from hearthkit.certd import (CERTD, EXIT_FAIL, EXIT_NOTHING, EXIT_OK, EXIT_USAGE, cert_serial,
                             cert_text, certd_args, certd_config, challenge_files, pubkey_of_cert,
                             pubkey_of_key, run)


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
    before = cert_serial(live / "cert.pem")
    r = run(args + ["--renew", "--force"], tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert cert_serial(live / "cert.pem") != before
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


def test_dry_run_writes_nothing(pebble, tmp_path):
    r = run(certd_args(pebble, tmp_path, "--issue", "dry.example.com", "--dry-run"), tmp_path)
    assert r.returncode == EXIT_OK, r.stderr
    assert "dry run" in r.stderr
    assert not (tmp_path / "certs" / "dry.example.com").exists()


def test_revoke(pebble, tmp_path):
    args = certd_args(pebble, tmp_path)
    assert run(args + ["--issue", "revoke.example.com"], tmp_path).returncode == EXIT_OK
    serial = cert_serial(tmp_path / "certs" / "revoke.example.com" / "cert.pem").lower()
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
    cfg.write_text(certd_config(pebble, state) + """  key_type: ec384
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


