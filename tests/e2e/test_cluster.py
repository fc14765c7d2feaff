"""Three hearth hosts sharing certificates through etcd (issue 16), each a network namespace of
its own with an etcd member and the whole stack under its supervisor, Pebble in the root
namespace (tests/hearthkit/cluster.py builds it all and always removes it).

Needs root: it makes namespaces. As root or in CI (HEARTH_CI=1) a missing tool or a namespace
that cannot be made fails the test; only a user who is not root sees it skipped."""
import pytest

from hearthkit.certd import no_sanitizer_report
from hearthkit.cluster import Cluster, etcd_health, require_cluster_tools

NAME = "shop.example.com"


@pytest.fixture
def make_cluster(short_tmp):
    """make_cluster(names, **Cluster options) -> a started Cluster; closed when the test ends,
    which must leave no namespace, link or process behind."""
    require_cluster_tools()
    made = []

    def make(names=(NAME,), **kw):
        c = Cluster(short_tmp / f"c{len(made)}", names, **kw)
        made.append(c)
        return c.start()
    yield make
    for c in made:
        logs = [h.log() for h in c.hosts]
        c.close()
        assert c.net.leftovers() == [], "the cluster's namespaces or links are still there"
        for text in logs:
            no_sanitizer_report(text)


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
