"""Automatic HTTPS with the real stack (always, not only with HEARTH_E2E_REAL): a tls: acme site
gets Pebble's certificate through the edge's challenge and a tls: internal site the local CA's,
both served without a restart."""
import os
import shutil

import pytest

from hearthkit.clients import handshake_fails, http10_fetch
from hearthkit.pebble import Pebble
from hearthkit.ports import free_port
from hearthkit.procs import wait_until
from hearthkit.supervisor import Stack


@pytest.mark.skipif(not shutil.which("pebble"), reason="needs pebble")
def test_acme_site_comes_up_on_http_then_https_without_restart(tmp_path, procs, request):
    """The real stack (always, not only with HEARTH_E2E_REAL), a tls: acme site and no
    certificate: the edge starts on HTTP at once, certd gets Pebble's certificate through the
    edge's challenge, the edge reloads and serves HTTPS, with no restart."""
    import ssl
    stack = Stack(tmp_path, procs, real=True)
    https_port = free_port()
    # Pebble validates HTTP-01 on the stack's own edge
    pebble = Pebble(tmp_path / "pebble", http_port=stack.port)
    request.addfinalizer(pebble.stop)
    name = "site.example.com"
    stack.write_config(
        extra=(f"certd:\n  server: {pebble.directory}\n  ca_bundle: {pebble.ca}\n"
               "  agree_tos: true\n"),
        sites=f"  - name: {name}\n    tls: acme\n    upstreams: []\n")
    with open(stack.config) as f:
        text = f.read().replace("  https: []\n", f'  https: ["127.0.0.1:{https_port}"]\n')
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    st = stack.status()
    edge_pid = st["edge"]["pid"]
    assert st["edge"]["state"] == "running", st
    # HTTP first: the edge answers before there is any certificate; until then the site is
    # not served in the clear (503), unless certd was already quicker than this.
    status, headers, _ = http10_fetch(stack.port, name)
    assert status in (503, 301), status
    if status == 503:
        assert headers["Retry-After"].isdigit()
    fullchain = os.path.join(stack.base, "state", "certs", name, "fullchain.pem")
    wait_until(lambda: os.path.exists(fullchain), timeout=30, what="certd's certificate")
    (tmp_path / "pebble-root.pem").write_bytes(pebble.root_pem())
    site_ctx = ssl.create_default_context(cafile=str(tmp_path / "pebble-root.pem"))
    wait_until(lambda: not handshake_fails(https_port, name, site_ctx), timeout=15,
               what="HTTPS with Pebble's certificate")
    # Now plain HTTP redirects, and HTTPS answers (404: the site has neither files nor app).
    status, headers, _ = http10_fetch(stack.port, name, "/x?y=1")
    assert status == 301 and headers["Location"] == f"https://{name}:{https_port}/x?y=1"
    assert http10_fetch(https_port, name, ctx=site_ctx)[0] == 404
    # No restart: the edge reloaded.
    st = stack.status()
    assert st["edge"]["pid"] == edge_pid and st["edge"]["restarts"] == 0, st
    assert all(c["state"] == "running" for c in st.values()), st
    assert stack.ctl("stop").returncode == 0
    stack.wait_exit()
    assert "runtime error:" not in stack.log() and "Sanitizer" not in stack.log(), stack.log()


def test_internal_site_comes_up_on_https(tmp_path, procs):
    """tls: internal: certd signs with the local CA it creates; the edge picks it up the same
    way, and handshakes for the name fail cleanly before that."""
    import ssl
    stack = Stack(tmp_path, procs, real=True)
    https_port = free_port()
    name = "app.localhost"
    stack.write_config(sites=f"  - name: {name}\n    upstreams: []\n")
    with open(stack.config) as f:
        text = f.read().replace("  https: []\n", f'  https: ["127.0.0.1:{https_port}"]\n')
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    edge_pid = stack.status()["edge"]["pid"]
    ca = os.path.join(stack.base, "state", "internal-ca", "ca.pem")
    wait_until(lambda: os.path.exists(ca), timeout=15, what="the internal CA")
    ctx = ssl.create_default_context(cafile=ca)
    wait_until(lambda: not handshake_fails(https_port, name, ctx), timeout=15,
               what="HTTPS with the internal CA's certificate")
    assert http10_fetch(https_port, name, ctx=ctx)[0] == 404
    assert http10_fetch(stack.port, name)[0] == 301
    st = stack.status()
    assert st["edge"]["pid"] == edge_pid and st["edge"]["restarts"] == 0, st
    assert stack.ctl("stop").returncode == 0
    stack.wait_exit()
