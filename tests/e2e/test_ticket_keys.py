"""Session tickets shared by hosts (docs/cluster.md): two edges on loopback, standing for two
hosts behind a load balancer, given the same ticket-keys file and certificate resume each other's
sessions (TLS 1.2 and 1.3); with another secret, or with the file naming other periods only, they
do not; a reload takes a changed file; a broken file leaves the edge serving with a warning and
the keys it had; with a cluster in the config the file's place is STATE_DIR/cluster/."""
import base64
import json
import os
import signal
import time

from hearthkit import binary
from hearthkit.clients import s_client
from hearthkit.ports import free_port
from hearthkit.procs import wait_until

EDGE = binary("edge", "edge")
PERIOD_S = 43200
REQ = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def write_keys(path, secret, periods=None):
    """The file as certd writes it: 0600, replaced whole with a rename."""
    now = int(time.time()) // PERIOD_S
    keys = [{"period": p, "secret": base64.b64encode(secret).decode()}
            for p in (periods or (now - 1, now, now + 1))]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"period_s": PERIOD_S, "keys": keys}))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def resumes(a, b, proto, tmp_path):
    """Whether a session from edge a resumes on edge b."""
    sess = tmp_path / "sess.pem"
    r = s_client(a.https, proto, "-ign_eof", "-sess_out", str(sess), data=REQ)
    assert r.returncode == 0 and b"200 OK" in r.stdout, r.stderr
    r = s_client(b.https, proto, "-ign_eof", "-sess_in", str(sess), data=REQ)
    assert r.returncode == 0 and b"200 OK" in r.stdout, r.stderr
    return b"Reused, TLSv1" in r.stdout


def reload(e, workers):
    """SIGHUP, then wait until each worker has said it reloaded."""
    before = e.log().count("reloaded: ")
    e.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: e.log().count("reloaded: ") >= before + workers, what="reloaded")


def test_hosts_with_the_same_file_resume_each_others_sessions(start_edge, tmp_path):
    shared, other, elsewhere = (tmp_path / n for n in ("shared.json", "other.json", "old.json"))
    secret = os.urandom(32)
    write_keys(shared, secret)
    write_keys(other, os.urandom(32))
    write_keys(elsewhere, secret, periods=(1, 2))  # the same secret, for long gone periods only
    a = start_edge("--ticket-keys", str(shared), workers=2, name="a")
    b = start_edge("--ticket-keys", str(shared), name="b")
    c = start_edge("--ticket-keys", str(other), name="c")
    d = start_edge("--ticket-keys", str(elsewhere), name="d")
    for proto in ("-tls1_2", "-tls1_3"):
        assert resumes(a, b, proto, tmp_path), proto
        assert resumes(b, a, proto, tmp_path), proto
        assert not resumes(a, c, proto, tmp_path), proto
        assert not resumes(a, d, proto, tmp_path), proto
        assert resumes(d, d, proto, tmp_path), proto  # its own secret, for the periods missing
    assert "ticket keys: 3 period(s) shared from" in a.log()


def test_reload_takes_a_changed_file_and_a_broken_one_keeps_the_keys(start_edge, tmp_path):
    mine, theirs = tmp_path / "a.json", tmp_path / "b.json"
    secret = os.urandom(32)
    write_keys(mine, secret)
    theirs.write_text("{not json")
    os.chmod(theirs, 0o600)
    a = start_edge("--ticket-keys", str(mine), name="a")
    b = start_edge("--ticket-keys", str(theirs), workers=2, name="b")
    assert "ticket keys: " in b.log() and "not JSON" in b.log()  # said, and serving
    assert not resumes(a, b, "-tls1_3", tmp_path)

    write_keys(theirs, secret)
    reload(b, 2)
    assert resumes(a, b, "-tls1_3", tmp_path) and resumes(b, a, "-tls1_2", tmp_path)

    # broken: said once per reload, and the keys loaded before stay
    for broken in ('{"period_s": 60, "keys": []}', "\0" * 100):
        theirs.write_text(broken)
        warned = b.log().count("keeping the keys loaded before")
        reload(b, 2)
        assert b.log().count("keeping the keys loaded before") == warned + 1
        assert resumes(a, b, "-tls1_3", tmp_path)
    write_keys(theirs, secret)
    os.chmod(theirs, 0o644)
    reload(b, 2)
    assert "group or others may access it (mode 0644)" in b.log()

    # gone: the edge's own secret again
    theirs.unlink()
    reload(b, 2)
    assert not resumes(a, b, "-tls1_3", tmp_path)
    assert b.proc.poll() is None and a.proc.poll() is None


def test_cluster_config_reads_the_file_from_its_state_dir(procs, pki, site, tmp_path):
    secret = os.urandom(32)
    edges = []
    for name in ("web1", "web2"):
        state = tmp_path / name
        (state / "cluster").mkdir(parents=True)
        write_keys(state / "cluster" / "ticket-keys.json", secret)
        port = free_port()
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(f"""
state_dir: {state}
edge: {{workers: 1, http: [], https: ["127.0.0.1:{port}"]}}
cluster: {{etcd: ["http://127.0.0.1:9"], host: {name}, plaintext_secrets: true}}
sites:
  - name: a.test
    tls: [{{cert: {pki['a_ec'][0]}, key: {pki['a_ec'][1]}}}]
    static: {{prefix: /, root: {site['www']}}}
""")
        p = procs.start_serving([EDGE, "--config", str(cfg)], [port], name=name)
        edges.append(type("E", (), {"https": port, "proc": p, "log": p.log}))
    for proto in ("-tls1_2", "-tls1_3"):
        assert resumes(edges[0], edges[1], proto, tmp_path), proto
