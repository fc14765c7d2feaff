"""Three hearth hosts sharing certificates through etcd (issue 16), each a network namespace of
its own with an etcd member and the whole stack under its supervisor, Pebble in the root
namespace (tests/hearthkit/cluster.py builds it all and always removes it).

Needs root: it makes namespaces. As root or in CI (HEARTH_CI=1) a missing tool or a namespace
that cannot be made fails the test; only a user who is not root sees it skipped."""
import shutil
import threading
import time

import pytest

from hearthkit.certd import no_sanitizer_report
from hearthkit.cluster import Cluster, HttpsLoop, etcd_health
from hearthkit.netns import require_cluster_tools
from hearthkit.procs import wait_until

NAME = "shop.example.com"


@pytest.fixture
def make_cluster(short_tmp, tmp_path):
    """make_cluster(names, **Cluster options) -> a started Cluster; closed when the test ends,
    which must leave no namespace, link or process behind. Its logs stay in tmp_path (the
    cluster itself is under a short path, for its sockets, removed after the test)."""
    require_cluster_tools()
    made = []

    def make(names=(NAME,), stacks=True, **kw):
        c = Cluster(short_tmp / f"c{len(made)}", names, **kw)
        made.append(c)
        return c.start(stacks=stacks)
    yield make
    for i, c in enumerate(made):
        c.close()
        for log in c.work.glob("**/*.log"):
            shutil.copy(log, tmp_path / f"c{i}-{log.parent.name}-{log.name}")
        assert c.net.leftovers() == [], "the cluster's namespaces or links are still there"
        for h in c.hosts:
            no_sanitizer_report(h.log())


def test_harness_hosts_etcd_stacks_and_pebble(make_cluster):
    """The harness itself: three namespaces, a healthy three-member etcd, each stack up and
    answering plain HTTP on its address, Pebble reachable from inside a namespace."""
    c = make_cluster()
    assert all(etcd_health(h.ip) for h in c.hosts)
    for h in c.hosts:
        assert h.answers_http(), h.log_tail()
        r = h.run("curl", "-sf", "-o", "/dev/null", "--cacert", c.pebble.ca, c.pebble.directory,
                  timeout=10)
        assert r.returncode == 0, f"{h.name} cannot reach Pebble: {r.stderr}"


# --- the scenarios of issue 16 ------------------------------------------------------------------
# Certificates live VALIDITY s and are renewed with FRACTION of that left: due 8 s after each
# issuance, on every host at the same moment, with 32 s of validity to spare (no client ever
# meets an expired certificate while a scenario holds a renewal back).
VALIDITY, FRACTION = 40, 0.8
DUE_S = VALIDITY * (1 - FRACTION)


def report(scenario, name, seen, hosts, orders, loop=None):
    """The closing note's figures: publication in etcd to every host serving the certificate,
    orders, failed client requests."""
    last = max(seen[h.name] for h in hosts)
    first = min(seen[h.name] for h in hosts)
    since = f"{last - seen['etcd']:.2f} s after etcd had it" if "etcd" in seen else "etcd: ?"
    client = f"; client requests {loop.ok} ok, {len(loop.failures)} failed" if loop else ""
    print(f"\ncluster [{scenario}] {name}: all {len(hosts)} hosts served it {since} "
          f"({last - first:.2f} s from the first host to the last; each time +-"
          f"{seen['poll']:.2f} s, one round of polls); orders {orders}{client}")


def assert_consistent(c, name, serial, hosts):
    """Every host in hosts stores serial for name with its own key, etcd holds it, and no
    host's store anywhere has a certificate beside another one's key."""
    assert c.mismatched_on_disk(name) == [], c.logs()
    assert {h.name: h.stored_serial(name) for h in hosts} == {h.name: serial for h in hosts}
    assert c.view().cert_serial(name) == serial


def assert_checked_elsewhere(c, name, tokens, renewal=False):
    """The CA's check of the order that got name's certificate (the last token it validated)
    was answered by a host other than the one that ordered: the token reached it via etcd.
    A renewal's order may have no check at all: Pebble 2.4 sometimes authorizes it from the
    account's earlier validation of the name, whatever PEBBLE_AUTHZREUSE says."""
    if renewal and not tokens:
        print(f"\ncluster: {name}: the CA reused an earlier validation (no check to land)")
        return
    assert tokens, f"Pebble validated no challenge for {name}"
    orderer, servers = c.orderer(name), c.token_servers(tokens[-1])
    assert servers and orderer not in servers, \
        f"{name}: ordered by {orderer}, its challenge answered by {servers}"


def first_issuance(c, names, timeout=30):
    """Waits until every host serves one certificate per name; returns {name: serial}."""
    serials = {}
    for name in names:
        serials[name], _ = c.wait_serving(c.hosts, name, timeout=timeout)
    return serials


def test_first_issuance_with_all_three_up(make_cluster):
    """Three hosts up (each registered in etcd) are given two new sites at the same moment:
    one order per name reaches the CA, its check answered by another host, and every host
    serves the one certificate."""
    names = ("shop.example.com", "blog.example.com")
    c = make_cluster(names, stacks=False)
    for h in c.hosts:
        h.write_config(names=())
    c.start_stacks()
    wait_until(lambda: len(c.view().range("hosts/", prefix=True)) == len(c.hosts), timeout=20,
               what="every host registered in etcd")
    mark = c.record.mark()
    for h in c.hosts:
        h.write_config()
    reloads = [threading.Thread(target=h.ctl, args=("reload",)) for h in c.hosts]
    for t in reloads:
        t.start()
    for t in reloads:
        t.join()
    for name in names:
        serial, seen = c.wait_serving(c.hosts, name, timeout=30)
        orders, issued, tokens = c.record.since(mark)
        assert issued.get(name) == [serial], f"{name}: issued {issued}\n{c.logs()}"
        assert_consistent(c, name, serial, c.hosts)
        assert_checked_elsewhere(c, name, tokens.get(name))
        report("first issuance", name, seen, c.hosts, orders)
    orders, issued, _ = c.record.since(mark)
    assert orders == len(names), f"{orders} orders for {len(names)} names\n{c.logs()}"
    with HttpsLoop(c) as loop:
        wait_until(lambda: loop.ok >= 60, timeout=10, what="60 answered requests")
    assert loop.failures == [], loop.summary()


def test_renewal_while_the_lock_holder_is_killed(make_cluster):
    """The host holding the lock dies mid-order (its supervisor SIGKILLed, then its link
    cut): its lease expires, another host takes the lock and completes the renewal; the
    survivors serve it with no failed request, and the dead host, back, never publishes."""
    c = make_cluster(validity=VALIDITY, renew_fraction=FRACTION)
    first_issuance(c, [NAME])
    # A registered host that never confirms a token holds every order at the point where its
    # holder waits for the confirmations (challenge_wait): the kill lands there, mid-order,
    # rather than wherever a fast local CA has got to a few milliseconds later.
    slow = c.view().put_leased("hosts/slow-to-confirm", '{"since": 0}', 60)
    with HttpsLoop(c) as loop:
        # mid-order: its order is at the CA and its challenge token in etcd (a renewal the CA
        # authorized from an earlier validation has no challenge and is not this one)
        wait_until(lambda: c.view().range("challenges/", prefix=True), timeout=3 * DUE_S,
                   interval=0.005, what="a renewal's challenge in etcd")
        # the holder is held (by the host that never confirms): it cannot have published, and
        # its order reached the CA before this mark
        mark = c.record.mark()
        old = c.view().cert_serial(NAME)
        holder = c.view().get(f"locks/{NAME}").decode()
        dead = next(h for h in c.hosts if h.name == holder)
        loop.drop(dead)
        dead.kill_supervisor()
        c.cut_link(dead)
        killed = time.monotonic()
        c.view().revoke(slow)
        live = [h for h in c.hosts if h is not dead]
        assert c.view().cert_serial(NAME) == old, "the holder published before it was killed"
        serial, seen = c.wait_serving(live, NAME, old=old, timeout=20)
        orders, issued, tokens = c.record.since(mark)
    assert issued.get(NAME) == [serial], f"issued {issued}\n{c.logs()}"
    assert orders == 1, f"{orders} orders after the dead host's: one expected\n{c.logs()}"
    assert c.orderer(NAME) != dead.name
    assert_checked_elsewhere(c, NAME, tokens.get(NAME), renewal=True)
    assert_consistent(c, NAME, serial, live)
    assert loop.failures == [], loop.summary()
    report("lock holder killed", NAME, seen, live, orders, loop)
    print(f"cluster [lock holder killed] renewed {max(seen[h.name] for h in live) - killed:.2f} s "
          f"after the holder was killed (lock_ttl {c.lock_ttl})")
    # back on the network, the dead host's leftover certd (its lease long gone) publishes
    # nothing and stores nothing; restarted, the host serves the certificate the others
    # renewed. Killed while it waited for confirmations, its order never reached finalization.
    c.restore_link(dead)
    time.sleep(2)  # the orphaned certd's chance to publish what it must not
    assert c.view().cert_serial(NAME) == serial, "a certificate ordered under a lost lock"
    assert dead.stored_serial(NAME) in (old, serial)
    assert [s for s, names in c.record.issued() if NAME in names][-1] == serial
    dead.kill_all()
    dead.start_stack()
    dead.wait_up()
    c.wait_serving([dead], NAME, old=old, timeout=10)
    assert dead.stored_pair_matches(NAME) is True


def test_etcd_quorum_lost_and_regained(make_cluster):
    """Two of the three etcd members stop before a renewal is due: every host goes on serving
    its certificate, no order reaches the CA; once the members are back, exactly one order
    renews it and every host serves the new certificate."""
    c = make_cluster(validity=VALIDITY, renew_fraction=FRACTION)
    old = first_issuance(c, [NAME])[NAME]
    issued_at = time.monotonic()
    with HttpsLoop(c) as loop:
        mark = c.record.mark()
        for h in c.hosts[:2]:
            h.stop_etcd(kill=True)
        # hold the quorum back until 3 s past the renewal's due time
        time.sleep(max(0, issued_at + DUE_S + 3 - time.monotonic()))
        assert c.record.since(mark)[0] == 0, f"an order without etcd's lock\n{c.logs()}"
        assert all(h.served_serial(NAME) == old for h in c.hosts)
        regained = time.monotonic()
        for h in c.hosts[:2]:
            h.start_etcd()
        c.wait_etcd_healthy(c.hosts)
        serial, seen = c.wait_serving(c.hosts, NAME, old=old, timeout=20)
        orders, issued, tokens = c.record.since(mark)
    assert issued.get(NAME) == [serial] and orders == 1, \
        f"{orders} orders, issued {issued}\n{c.logs()}"
    assert_consistent(c, NAME, serial, c.hosts)
    assert_checked_elsewhere(c, NAME, tokens.get(NAME), renewal=True)
    assert loop.failures == [], loop.summary()
    print(f"\ncluster [quorum] renewed {max(seen[h.name] for h in c.hosts) - regained:.2f} s "
          "after etcd's members were started again")
    report("quorum lost and regained", NAME, seen, c.hosts, orders, loop)


def test_one_host_partitioned_during_a_renewal(make_cluster):
    """A host cut off before a renewal is due keeps its certificate while the other two renew
    it (one order); back on the network it takes the new certificate and never writes its
    older one over it."""
    c = make_cluster(validity=VALIDITY, renew_fraction=FRACTION)
    old = first_issuance(c, [NAME])[NAME]
    away = c.hosts[0]
    live = c.hosts[1:]
    with HttpsLoop(c) as loop:
        mark = c.record.mark()
        loop.drop(away)
        c.cut_link(away)
        serial, seen = c.wait_serving(live, NAME, old=old, timeout=DUE_S + 15)
        orders, issued, tokens = c.record.since(mark)
        assert away.stored_serial(NAME) == old  # it heard nothing while cut off
        back = time.monotonic()
        c.restore_link(away)
        loop.add(away)
        _, seen_back = c.wait_serving([away], NAME, old=old, timeout=15)
        # its lease expired while it was away: it takes a new one and is a live host again,
        # one that can order the next renewal
        wait_until(lambda: c.view().get(f"hosts/{away.name}") is not None, timeout=5,
                   what=f"{away.name} registered in etcd again")
        time.sleep(1)  # requests to the host that came back
    assert issued.get(NAME) == [serial] and orders == 1, \
        f"{orders} orders, issued {issued}\n{c.logs()}"
    assert c.view().cert_serial(NAME) == serial, "an older certificate was written over it"
    assert_consistent(c, NAME, serial, c.hosts)
    assert_checked_elsewhere(c, NAME, tokens.get(NAME), renewal=True)
    assert loop.failures == [], loop.summary()
    report("one host partitioned", NAME, seen, live, orders, loop)
    print(f"cluster [partition] the host that came back served it "
          f"{seen_back[away.name] - back:.2f} s after its link was restored")
