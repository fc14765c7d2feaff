"""certd on several hosts sharing one etcd (docs/cluster.md), on loopback: each "host" is a
certd daemon with a state directory of its own, and Pebble's HTTP-01 checks reach only host
a's webroot (the real edge serves it), so an order from host b succeeds only when its token
travelled through etcd. The whole stack on three network namespaces is test_cluster.py."""
import json
import os
import subprocess
import time

from hearthkit.certd import (CERTD, EXIT_FAIL, cert_serial, no_sanitizer_report, pubkey_of_cert,
                             pubkey_of_key)
from hearthkit.etcd import Etcd
from hearthkit.procs import wait_until


def host_config(tmp_path, pebble, etcd, host, webroot, sites, secret, extra=""):
    state = tmp_path / host
    state.mkdir(exist_ok=True)
    cfg = tmp_path / f"{host}.yaml"
    cfg.write_text(f"""state_dir: {state}
log_level: debug
certd:
  server: {pebble.directory}
  ca_bundle: {pebble.ca}
  agree_tos: true
  webroot: {webroot}
cluster:
  etcd: [{", ".join(etcd.endpoints)}]
  host: {host}
  secret_key_file: {secret}
  lock_ttl: 3s
  challenge_wait: 5s
{extra}sites:
""" + "".join(f"  - name: {s}\n    tls: acme\n" for s in sites))
    return cfg


def stored(tmp_path, host, name, leaf="cert.pem"):
    return tmp_path / host / "certs" / name / leaf


def has_cert(tmp_path, host, name):
    return stored(tmp_path, host, name).exists()


def orders(procs, daemons, name):
    return sum(procs.log(d).count(f"{name}: ordering a certificate") for d in daemons)


def secret_file(tmp_path, name="cluster.key"):
    path = tmp_path / name
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    return path


def start_hosts(tmp_path, procs, pebble, etcd, sites, hosts=("a", "b")):
    secret = secret_file(tmp_path)
    daemons = {}
    for h in hosts:
        webroot = pebble.webroot if h == "a" else tmp_path / h / "www"
        cfg = host_config(tmp_path, pebble, etcd, h, webroot, sites, secret)
        daemons[h] = procs.start([CERTD, "-c", str(cfg), "--daemon"], name=f"certd-{h}")
    return daemons


def test_hosts_share_one_order_and_its_challenge(make_pebble, tmp_path, procs):
    pebble = make_pebble()
    etcd = Etcd(tmp_path / "etcd", procs).start()
    # both daemons want the name at the same moment: one takes the lock and orders
    daemons = start_hosts(tmp_path, procs, pebble, etcd, ["shared.example.com"])
    name = "shared.example.com"
    wait_until(lambda: all(has_cert(tmp_path, h, name) for h in daemons), timeout=30,
               what="the certificate on both hosts")
    serials = {h: cert_serial(stored(tmp_path, h, name)) for h in daemons}
    assert len(set(serials.values())) == 1, serials
    assert orders(procs, daemons.values(), name) == 1
    for h in daemons:
        assert pubkey_of_cert(stored(tmp_path, h, name)) == \
            pubkey_of_key(stored(tmp_path, h, name, "privkey.pem"))
    # what etcd holds: private keys sealed, never in the clear
    dump = etcd.etcdctl("get", "--prefix", "/hearth/").stdout
    assert "-----BEGIN CERTIFICATE-----" in dump and "PRIVATE KEY" not in dump
    # a new name for host b only: Pebble checks host a's webroot, which b's token reached
    # through etcd (confirmed by a before b told the CA to look)
    cfg_b = tmp_path / "b.yaml"
    cfg_b.write_text(cfg_b.read_text() + "  - name: only-b.example.com\n    tls: acme\n")
    r = subprocess.run([CERTD, "-c", str(cfg_b), "--issue", "only-b.example.com"],
                       capture_output=True, text=True, timeout=60)
    no_sanitizer_report(r.stderr)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: has_cert(tmp_path, "a", "only-b.example.com"), timeout=10,
               what="host b's certificate on host a")
    assert cert_serial(stored(tmp_path, "a", "only-b.example.com")) == \
        cert_serial(stored(tmp_path, "b", "only-b.example.com"))
    # the session-ticket secrets, the same on both hosts, in the file the edge reads
    tickets = [tmp_path / h / "cluster" / "ticket-keys.json" for h in daemons]
    wait_until(lambda: all(t.exists() for t in tickets), timeout=5, what="the ticket keys")
    assert tickets[0].read_bytes() == tickets[1].read_bytes()
    assert all(t.stat().st_mode & 0o777 == 0o600 for t in tickets)
    doc = json.loads(tickets[0].read_text())
    assert doc["period_s"] == 43200 and len(doc["keys"]) == 2
    assert {k["period"] for k in doc["keys"]} == {int(time.time()) // 43200 + i for i in (0, 1)}
    # one account for the cluster (hosts that ordered hold its key), no token or ack left
    keys = {p.read_bytes() for h in daemons for p in (tmp_path / h / "accounts").rglob("*.key")}
    assert len(keys) == 1
    assert len(etcd.etcdctl("get", "--prefix", "/hearth/account/", "--keys-only").stdout.split()) == 1
    wait_until(lambda: not etcd.etcdctl("get", "--prefix", "/hearth/challenges/",
                                        "--keys-only").stdout.strip(), timeout=5,
               what="the challenge keys to go")
    wait_until(lambda: not etcd.etcdctl("get", "--prefix", "/hearth/acks/",
                                        "--keys-only").stdout.strip(), timeout=5,
               what="the acks to go")
    for d in daemons.values():
        assert d.poll() is None
        no_sanitizer_report(procs.log(d))


def test_a_held_lock_makes_the_other_host_wait(make_pebble, tmp_path, procs):
    pebble = make_pebble()
    etcd = Etcd(tmp_path / "etcd", procs).start()
    secret = secret_file(tmp_path)
    cfg = host_config(tmp_path, pebble, etcd, "b", pebble.webroot, ["locked.example.com"], secret)
    # another host holds the lock (with a lease of its own that lives on)
    lease = etcd.etcdctl("lease", "grant", "30").stdout.split()[1]
    etcd.etcdctl("put", "--lease", lease, "/hearth/locks/locked.example.com", "web9")
    r = subprocess.run([CERTD, "-c", str(cfg), "--issue", "locked.example.com"],
                       capture_output=True, text=True, timeout=30)
    no_sanitizer_report(r.stderr)
    assert r.returncode == EXIT_FAIL
    assert "host web9 is ordering it" in r.stderr
    assert not has_cert(tmp_path, "b", "locked.example.com")
    # the holder's lease ends (it died): the lock is free, the order goes through
    etcd.etcdctl("lease", "revoke", lease)
    r = subprocess.run([CERTD, "-c", str(cfg), "--issue", "locked.example.com"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert has_cert(tmp_path, "b", "locked.example.com")


def test_a_host_with_another_secret_key_keeps_its_own(make_pebble, tmp_path, procs):
    pebble = make_pebble()
    etcd = Etcd(tmp_path / "etcd", procs).start()
    daemons = start_hosts(tmp_path, procs, pebble, etcd, ["sealed.example.com"], hosts=("a",))
    wait_until(lambda: has_cert(tmp_path, "a", "sealed.example.com"), timeout=30,
               what="host a's certificate")
    stranger = host_config(tmp_path, pebble, etcd, "c", tmp_path / "c" / "www",
                           ["sealed.example.com"], secret_file(tmp_path, "other.key"))
    c = procs.start([CERTD, "-c", str(stranger), "--daemon"], name="certd-c")
    wait_until(lambda: "cannot be opened with this host's secret_key_file" in procs.log(c),
               timeout=10, what="host c to refuse what it cannot open")
    time.sleep(0.5)  # would it store anything, it would have by now: nothing may appear
    assert not has_cert(tmp_path, "c", "sealed.example.com")
    assert c.poll() is None and daemons["a"].poll() is None
    no_sanitizer_report(procs.log(c))


def test_etcd_away_the_hosts_keep_their_files_and_resume(make_pebble, tmp_path, procs):
    pebble = make_pebble()
    etcd = Etcd(tmp_path / "etcd", procs).start()
    daemons = start_hosts(tmp_path, procs, pebble, etcd, ["away.example.com"])
    wait_until(lambda: all(has_cert(tmp_path, h, "away.example.com") for h in daemons),
               timeout=30, what="the certificate on both hosts")
    before = cert_serial(stored(tmp_path, "a", "away.example.com"))
    etcd.stop_member(0)
    # a new site while etcd is away: the order waits (no lock can be taken), nothing breaks
    for h in ("a", "b"):
        cfg = tmp_path / f"{h}.yaml"
        cfg.write_text(cfg.read_text() + "  - name: later.example.com\n    tls: acme\n")
        daemons[h].send_signal(1)  # SIGHUP: re-read the file, check now
    wait_until(lambda: all("the renewal waits for it" in procs.log(d) for d in daemons.values()),
               timeout=15, what="both hosts to wait for etcd")
    assert cert_serial(stored(tmp_path, "a", "away.example.com")) == before
    assert not has_cert(tmp_path, "a", "later.example.com")
    etcd.start_member(0)
    etcd.wait_healthy()
    wait_until(lambda: all(has_cert(tmp_path, h, "later.example.com") for h in daemons),
               timeout=30, what="the waiting order to complete once etcd is back")
    assert orders(procs, daemons.values(), "later.example.com") == 1
    for d in daemons.values():
        assert d.poll() is None
        no_sanitizer_report(procs.log(d))


def host_lease(etcd, host):
    out = etcd.etcdctl("get", f"/hearth/hosts/{host}", "-w", "json").stdout
    kvs = json.loads(out).get("kvs", [])
    return kvs[0].get("lease") if kvs else None


def test_a_reload_keeps_the_host_registered(make_pebble, tmp_path, procs):
    # certd reloads its config by re-executing itself; the hosts ordering meanwhile must
    # still count on this host (it stays registered: its next self takes its lease over)
    pebble = make_pebble()
    etcd = Etcd(tmp_path / "etcd", procs).start()
    daemons = start_hosts(tmp_path, procs, pebble, etcd, ["reload.example.com"], hosts=("a",))
    d = daemons["a"]
    wait_until(lambda: host_lease(etcd, "a") is not None, timeout=10, what="host a registered")
    lease = host_lease(etcd, "a")
    d.send_signal(1)  # SIGHUP
    wait_until(lambda: procs.log(d).count("cluster: host a,") == 2, timeout=10,
               what="certd started over")
    wait_until(lambda: "session-ticket keys" in procs.log(d).split("SIGHUP")[-1] or
               procs.log(d).count("registered") >= 2, timeout=5, what="the sync thread again")
    assert host_lease(etcd, "a") == lease
    leases = etcd.etcdctl("lease", "list").stdout
    assert format(int(lease), "x") in leases
    # stopped for good, the host leaves at once (its lease revoked, not left to expire)
    d.send_signal(15)
    assert d.wait(timeout=10) == 0
    assert host_lease(etcd, "a") is None
    no_sanitizer_report(procs.log(d))
