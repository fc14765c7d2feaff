"""A tls: acme site whose certificate is not there yet: every edge worker serves it from the
moment certd's store has it, without waiting for the reload certd asks for (workers reload
one after the other; before, one served the new certificate while another still answered
"unrecognized name")."""
import os
import ssl
import socket

from hearthkit import binary
from hearthkit.certs import make_test_pki
from hearthkit.ports import free_port, port_open
from hearthkit.procs import wait_until

NAME = "pending.localhost"


def handshake(port, ctx):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname=NAME):
                return True
    except (OSError, ssl.SSLError):
        return False


def test_every_worker_serves_a_certificate_as_soon_as_it_is_stored(tmp_path, procs):
    state = tmp_path / "state"
    http, https = free_port(), free_port()
    config = tmp_path / "hearth.yaml"
    config.write_text(
        f"run_dir: {tmp_path}/run\nstate_dir: {state}\n"
        f"edge:\n  workers: 2\n  http: [\"127.0.0.1:{http}\"]\n"
        f"  https: [\"127.0.0.1:{https}\"]\n"
        f"sites:\n  - name: {NAME}\n    tls: acme\n    upstreams: []\n"
        "certd:\n  agree_tos: true\n")
    procs.start([binary("edge", "edge"), "--config", str(config)], name="edge")
    wait_until(lambda: port_open(https), what="the edge's HTTPS port")
    pki = make_test_pki(tmp_path / "pki", f"DNS:{NAME}")
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    assert not handshake(https, ctx), "served before there was a certificate"
    # certd's store: CERT_DIR/NAME is a symlink to a directory with the two files
    version = state / "certs" / ".v1"
    version.mkdir(parents=True)
    os.link(pki / "cert.pem", version / "fullchain.pem")
    os.link(pki / "key.pem", version / "privkey.pem")
    os.symlink(".v1", state / "certs" / NAME)
    wait_until(lambda: handshake(https, ctx), timeout=5, what="the certificate served")
    # no reload happened, and yet no worker refuses the name any more
    results = [handshake(https, ctx) for _ in range(40)]
    assert all(results), f"{results.count(False)} of 40 handshakes refused"
