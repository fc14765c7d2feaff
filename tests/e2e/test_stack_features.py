"""Issue 15's edge features switched on in the one YAML file and run through the supervisor,
as an operator would: compression, a rate limit, metrics. (Each has its own detailed tests
against the edge alone; this checks they reach the stack through `hearth start`.)"""
import gzip
import http.client
import urllib.request

from hearthkit.ports import free_port
from hearthkit.supervisor import Stack

CSS = b"body { color: #333; }\n" * 200


def get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers={"Host": "site.localhost", **(headers or {})})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r, body


def test_compression_limits_and_metrics_through_the_supervisor(tmp_path, procs):
    stack = Stack(tmp_path, procs, real=True)
    www = tmp_path / "www"
    www.mkdir()
    (www / "site.css").write_bytes(CSS)
    metrics = free_port()
    with open(stack.config, "w") as f:
        f.write(f"run_dir: {stack.run_dir}\nstate_dir: {tmp_path}/state\n"
                f"metrics: 127.0.0.1:{metrics}\n"
                f"edge:\n  http: [\"127.0.0.1:{stack.port}\"]\n  https: []\n"
                "  compression: {enabled: true}\n"
                f"appserver:\n  modules: [{stack.module}]\n"
                "sites:\n  - name: site.localhost\n    tls: off\n"
                f"    static:\n      - {{prefix: /static/, root: {www}}}\n"
                "    limits:\n      - {prefix: /app/, rate: 1r/m, burst: 2}\n")
    stack.start(write=False)
    r, body = get(stack.port, "/static/site.css", {"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(body) == CSS and "Accept-Encoding" in r.getheader("Vary")
    codes = [get(stack.port, "/app/")[0] for _ in range(5)]
    assert [c.status != 429 for c in codes] == [True] * 3 + [False] * 2, [c.status for c in codes]
    assert int(codes[-1].getheader("Retry-After")) > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as m:
        text = m.read().decode()
    assert 'hearth_edge_limited_requests_total{site="site.localhost"} 2' in text, text
    assert stack.ctl("stop").returncode == 0
    stack.wait_exit()
