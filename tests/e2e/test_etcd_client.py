"""The etcd client (shared/etcd.h) against real etcd processes: plain, with a dead first
endpoint, with TLS (client certificates) and auth, a server that accepts connections and
never answers, and one whose answers are all broken. tests/unit/etcd_check.c makes the calls and asserts what comes back (keys,
prefixes, transactions applied and not, leases and their expiry, watches in order, at their
timeout, stopped, from a compacted revision; etcd_status); this file makes the set-ups."""
import os
import re
import socket
import subprocess

import pytest
from hearthkit import binary
from hearthkit.etcd import Etcd, EtcdTLS
from hearthkit.ports import free_port
from hearthkit.procs import Processes, wait_until
from hearthkit.upstreams import Answer, serve_http

CHECK = binary("tests", "etcd_check")
STATUS_LINE = re.compile(r"^status: https?://127\.0\.0\.1:\d+: etcd 3\.\d+\.\d+, "
                         r"leader [0-9a-f]+, raft term \d+(, logged in as \w+)?$", re.M)


def check(scenarios, endpoints, **env):
    """etcd_check's scenarios against endpoints, ETCD_CHECK_NAME=value for each of env; fails
    with its report unless every check passed. Returns what it printed."""
    env = {f"ETCD_CHECK_{k.upper()}": str(v) for k, v in env.items()}
    r = subprocess.run([CHECK, scenarios, *endpoints], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, **env))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    d = tmp_path_factory.mktemp("etcd")
    procs = Processes(d)
    try:
        yield Etcd(d, procs).start()
    finally:
        procs.stop_all()


def test_every_call_on_plain_etcd(plain):
    out = check("kv,live", plain.endpoints)
    assert STATUS_LINE.search(out), out


def test_a_dead_first_endpoint_is_skipped(plain):
    dead = f"http://127.0.0.1:{free_port()}"
    out = check("quick", [dead] + plain.endpoints)
    assert re.search(rf"^status: {dead}: .*(refused|Couldn't connect)", out, re.M), out
    assert STATUS_LINE.search(out), out


def test_a_watch_from_a_compacted_revision(plain):
    old = plain.put("/compacted/a", "1")
    plain.compact(plain.put("/compacted/a", "2"))
    check("compacted", plain.endpoints, rev=old)


def test_a_server_that_never_answers():
    """Connections are accepted (the kernel's backlog) and nothing is ever read or written:
    every call ends with an error at its timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        out = check("unanswered", [f"http://127.0.0.1:{s.getsockname()[1]}"], timeout_ms=300)
    assert "timed out" in out, out


# Answers no call can use: not JSON, not an object, fields of the wrong kind or not base64,
# two objects where one is expected and a broken watch event, larger than the client takes.
BROKEN_ANSWERS = [
    b"<html>not json</html>",
    b"[]",
    b'{"header": {"revision": "x"}, "kvs": [{"key": "!!"}], "ID": "x", "succeeded": "x",'
    b' "result": "x", "version": 5}',
    b'{"result": {"created": true}}\n{"result": {"events": [{"kv": {"key": "***"}}]}}\n',
    b'{"header": {}, "kvs": [{"key": "Zm9v", "mod_revision": "99999999999999999999"}],'
    b' "result": {"created": true, "TTL": []}, "ID": "0", "version": 1}',
]


def test_a_cluster_that_loses_its_quorum(tmp_path, procs):
    """Three members, two stopped: the third has no leader and says so at once (calls do not
    wait for their timeout) and the calls try every endpoint; with one back, the calls go
    through again, past the one still down."""
    etcd = Etcd(tmp_path, procs, members=3).start()
    try:
        etcd.stop_member(1)
        etcd.stop_member(2)
        wait_until(lambda: etcd.leader(0) == 0, timeout=10, what="member 0 to lose its leader")
        # a dead member first: the one without a leader is asked second, and every one once
        order = [etcd.endpoints[i] for i in (1, 0, 2)]
        out = check("leaderless", order, timeout_ms=5000)
        assert re.search(r"^status: http://\S+: etcd 3\.\S+, no leader, ", out, re.M), out
        get = re.search(r"^get: .*", out, re.M).group(0)
        assert all(get.count(f"etcd at {e}:") == 1 for e in order), get
        etcd.start_member(1)
        etcd.wait_healthy([0, 1])
        check("quick", etcd.endpoints)
    finally:
        etcd.stop()


class BrokenEtcd(Answer):
    body = b""


def test_a_server_whose_answers_are_broken():
    """Every call ends with an error, none crashes (the sanitizer build runs this too)."""
    with serve_http(BrokenEtcd) as srv:
        for answer in BROKEN_ANSWERS:
            BrokenEtcd.body = answer
            check("malformed", [srv.url])
        # larger than the client takes (16 MiB): once for a call, once for the watch
        BrokenEtcd.body = b"{" + b" " * (17 << 20) + b"}"
        out = check("oversized", [srv.url])
    assert out.count("larger than") == 2, out


def test_tls_and_auth(tmp_path, procs):
    """Client certificates and a user with a role of its own; tokens that lapse after a
    second unused, so the client has to log in again (calls and watch); a lease expiring;
    wrong credentials refused with a clear message."""
    tls = EtcdTLS(tmp_path / "pki")
    etcd = Etcd(tmp_path, procs, tls=tls, token_ttl=1).start()
    etcd.enable_auth({"hearth": "hearth-pw"})
    env = dict(ca=tls.ca, cert=tls.client_cert, key=tls.client_key, user="hearth",
               password="hearth-pw")
    out = check("kv,expiry", etcd.endpoints, **env)
    assert re.search(r"^status: https://.*, logged in as hearth$", out, re.M), out
    out = check("refused", etcd.endpoints, **dict(env, password="wrong"))
    assert "the credentials of user hearth were refused" in out, out
