"""`hearth check --online`: with a cluster configured, after the offline checks, the secret key
file is checked and a real etcd on loopback is reached (its version line, exit 0); an endpoint
that does not answer is exit 1 within the configured timeout; a secret key file others may read
is a clear error; etcd auth with a wrong password is refused; plain `check` never touches the
network; without a cluster there is nothing online to check."""
import os
import socket
import time

import pytest

from hearthkit.ports import free_port
from hearthkit.etcd import Etcd


def cluster_map(endpoints, key, timeout="1s", extra=""):
    eps = ", ".join(f'"{e}"' for e in endpoints)
    return (f"cluster:\n  etcd: [{eps}]\n  host: web1\n  secret_key_file: {key}\n"
            f"  timeout: {timeout}\n{extra}")


@pytest.fixture
def secret_key(tmp_path):
    key = tmp_path / "cluster.key"
    key.write_bytes(os.urandom(32))
    os.chmod(key, 0o600)
    return key


@pytest.fixture
def etcd(tmp_path, procs):
    return Etcd(tmp_path / "etcd", procs).start()


def test_online_reaches_etcd_and_plain_check_stays_offline(stack, etcd, secret_key):
    stack.write_config(extra=cluster_map([etcd.endpoints[0]], secret_key))
    r = stack.ctl("check", "--online")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{etcd.endpoints[0]}: etcd 3." in r.stdout, r.stdout
    assert f"secret key {secret_key}: ok (32 bytes)" in r.stdout
    assert "the cluster is reachable" in r.stdout
    # without --online nothing is reached: etcd gone, check still passes
    etcd.stop_member(0)
    r = stack.ctl("check")
    assert r.returncode == 0 and "cluster:" not in r.stdout, r.stdout + r.stderr
    r = stack.ctl("check", "--online")
    assert r.returncode == 1 and "online check failed" in r.stderr, r.stdout + r.stderr


def test_online_unreachable_endpoint_fails_within_the_timeout(stack, secret_key):
    # a listener that accepts and never answers: the call waits out cluster.timeout
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    url = f"http://127.0.0.1:{mute.getsockname()[1]}"
    closed = f"http://127.0.0.1:{free_port()}"
    try:
        for endpoints in ([closed], [url]):
            stack.write_config(extra=cluster_map(endpoints, secret_key, timeout="1s"))
            t0 = time.monotonic()
            assert stack.ctl("check").returncode == 0
            offline = time.monotonic() - t0
            t0 = time.monotonic()
            r = stack.ctl("check", "--online", timeout=30)
            took = time.monotonic() - t0
            assert r.returncode == 1, r.stdout + r.stderr
            assert endpoints[0] in r.stdout and "cannot be reached at any endpoint" in r.stderr
            # the offline checks, then the 1s timeout (with room for a loaded machine)
            assert took < offline + 1 + 2, (took, offline)
    finally:
        mute.close()


def test_online_secret_key_file_problems_are_said(stack, etcd, secret_key, tmp_path):
    os.chmod(secret_key, 0o644)
    stack.write_config(extra=cluster_map([etcd.endpoints[0]], secret_key))
    r = stack.ctl("check", "--online")
    assert r.returncode == 1
    assert (f"cluster.secret_key_file {secret_key}: group or others may access it (mode 0644)"
            in r.stderr), r.stderr
    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789")
    os.chmod(short, 0o600)
    stack.write_config(extra=cluster_map([etcd.endpoints[0]], short))
    r = stack.ctl("check", "--online")
    assert r.returncode == 1 and "10 bytes, fewer than 32" in r.stderr, r.stderr
    stack.write_config(extra=cluster_map([etcd.endpoints[0]], tmp_path / "absent.key"))
    r = stack.ctl("check", "--online")
    assert r.returncode == 1 and "absent.key: No such file" in r.stderr, r.stderr


def test_online_with_etcd_auth(stack, etcd, secret_key, tmp_path):
    etcd.enable_auth({"hearth": "s3cret"})
    pw = tmp_path / "etcd-password"
    for password, code in (("s3cret\n", 0), ("wrong\n", 1)):
        pw.write_text(password)
        stack.write_config(extra=cluster_map(
            [etcd.endpoints[0]], secret_key, extra=f"  username: hearth\n  password_file: {pw}\n"))
        r = stack.ctl("check", "--online")
        assert r.returncode == code, r.stdout + r.stderr
    assert "refused the credentials" in r.stderr, r.stderr


def test_online_without_a_cluster(stack):
    stack.write_config()
    r = stack.ctl("check", "--online")
    assert r.returncode == 0 and "nothing online to check" in r.stdout, r.stdout + r.stderr
    r = stack.ctl("status", "--online")
    assert r.returncode == 2 and "--online goes with check" in r.stderr
