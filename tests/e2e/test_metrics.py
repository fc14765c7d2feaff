"""End-to-end tests of the metrics endpoint (docs/metrics.md): the real supervisor, edge,
appserver and certd, with `metrics` on a free loopback port; requests go through the edge and
the counters are read back with their labels, checked by promtool, and scraped by a real
Prometheus (Debian's package), read back through its HTTP API."""
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from hearthkit import binary
from hearthkit.ports import free_port, port_open
from hearthkit.procs import wait_until

SUPERVISOR = binary("supervisor", "hearth")
HELLO = binary("examples", "hello.so")


class Stack:
    """A whole stack: a plain-HTTP site with static files in front of the hello module, and a
    site with an internal certificate, so certd runs too."""

    def __init__(self, procs, base):
        self.procs, self.base = procs, base
        self.http, self.https, self.metrics = free_port(), free_port(), free_port()
        www = base / "www"
        www.mkdir()
        (www / "1k.txt").write_bytes(b"x" * 1024)
        self.config = base / "hearth.yaml"
        self.config.write_text(
            f"run_dir: {base}/run\nstate_dir: {base}/state\n"
            f"metrics: 127.0.0.1:{self.metrics}\n"
            f"edge:\n  http: [\"127.0.0.1:{self.http}\"]\n  https: [\"127.0.0.1:{self.https}\"]\n"
            f"  workers: 2\n"
            f"appserver:\n  modules: [{HELLO}]\n  workers: 2\n"
            "supervisor:\n  stop_timeout: 2s\n"
            "sites:\n"
            "  - name: plain.localhost\n    tls: \"off\"\n"
            f"    static:\n      - prefix: /static/\n        root: {www}\n"
            "  - name: example.localhost\n")

    def start(self):
        self.proc = self.procs.start([SUPERVISOR, "start", "-c", str(self.config)],
                                     name="supervisor")
        wait_until(lambda: self.proc.poll() is not None or self.all_up(), timeout=15,
                   what="the stack to come up")
        assert self.proc.poll() is None, self.procs.log(self.proc)

    def get(self, path, host="plain.localhost"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", headers={"Host": host})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            return r.read().decode()

    def all_up(self):
        text = self.scrape_or_empty()
        return all(f'hearth_component_up{{component="{name}"}} 1' in text
                   for name in ("edge", "appserver", "certd"))

    def scrape_or_empty(self):
        try:
            return self.scrape() if port_open(self.metrics) else ""
        except OSError:
            return ""


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture
def stack(procs, tmp_path):
    s = Stack(procs, tmp_path)
    s.start()
    return s


def test_one_scrape_gives_the_stack_with_labels_and_values(stack):
    assert stack.get("/static/1k.txt") == (200, b"x" * 1024)
    assert stack.get("/static/missing.txt")[0] == 404
    assert stack.get("/")[0] == 200  # proxied to the appserver
    # The access log's point comes after the response's last byte: wait for the third count.
    key = 'hearth_edge_request_duration_seconds_count{site="plain.localhost"}'
    wait_until(lambda: samples(stack.scrape()).get(key) == 3, timeout=5, what="three requests")
    wait_until(lambda: any(k.startswith("hearth_certd_certificate_not_after") for k in
                           samples(stack.scrape())), timeout=10, what="certd's expiry")
    wait_until(lambda: samples(stack.scrape())['hearth_appserver_workers{state="idle"}'] == 2,
               timeout=5, what="the appserver's master to count its workers")
    text = stack.scrape()
    m = samples(text)
    site = 'site="plain.localhost"'
    assert m[f'hearth_edge_requests_total{{{site},code="2xx"}}'] == 2
    assert m[f'hearth_edge_requests_total{{{site},code="4xx"}}'] == 1
    assert m[f'hearth_edge_requests_total{{{site},code="5xx"}}'] == 0
    assert m[f'hearth_edge_response_body_bytes_total{{{site}}}'] >= 1024
    assert m[f'hearth_edge_request_duration_seconds_bucket{{{site},le="+Inf"}}'] == 3
    assert m["hearth_edge_connections_total"] >= 3
    assert m["hearth_edge_open_connections"] >= 0
    up = 'upstream="unix:%s/run/app.sock"' % stack.base
    assert m[f"hearth_edge_upstream_header_duration_seconds_count{{{up}}}"] == 1
    assert m['hearth_appserver_requests_total{code="2xx"}'] == 1
    # the master counts its workers on each tick (100 ms)
    assert m['hearth_appserver_workers{state="busy"}'] + \
        m['hearth_appserver_workers{state="idle"}'] == 2, text
    for name in ("edge", "appserver", "certd"):
        assert m[f'hearth_component_up{{component="{name}"}}'] == 1
        assert m[f'hearth_component_state{{component="{name}",state="running"}}'] == 1
        assert m[f'hearth_component_restarts_total{{component="{name}"}}'] == 0
    cert = 'cert="example.localhost"'
    assert m[f"hearth_certd_certificate_not_after_timestamp_seconds{{{cert}}}"] > time.time()
    assert m[f"hearth_certd_last_renewal_success{{{cert}}}"] == 1
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_only_get_on_the_metrics_path(stack):
    base = f"http://127.0.0.1:{stack.metrics}"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/", timeout=5)
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(base + "/metrics", data=b"x"), timeout=5)
    assert e.value.code == 405


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="prometheus not installed (Debian package prometheus)")
def test_a_real_prometheus_scrapes_the_stack(stack, procs, tmp_path):
    assert stack.get("/static/1k.txt")[0] == 200
    port = free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: hearth\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{stack.metrics}']\n")
    procs.start(["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={tmp_path}/tsdb",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                name="prometheus")
    query = 'hearth_edge_requests_total{site="plain.localhost",code="2xx"}'

    def value():
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                result = json.load(r)["data"]["result"]
        except (OSError, ValueError, KeyError):
            return None
        return result[0]["value"][1] if result else None

    wait_until(lambda: value() == "1", timeout=30, interval=0.5,
               what="Prometheus to scrape the stack")
