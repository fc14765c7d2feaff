"""The end-to-end tests' fixtures: processes always stopped when a test ends, the edge tests'
certificates, files, upstream and edge, the notes site and WSGI servers; and pytest's hooks
for the markers. Helpers live in tests/hearthkit, which this puts on sys.path."""
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hearthkit.edge  # noqa: E402
from hearthkit.certs import LazyPKI, make_test_pki  # noqa: E402
from hearthkit.pebble import Pebble  # noqa: E402
from hearthkit.procs import Processes  # noqa: E402
from hearthkit.supervisor import Stack  # noqa: E402
from hearthkit.upstreams import Upstream, start_upstream  # noqa: E402
from hearthkit.wsgi import (SANITIZED, WSGI_SERVER, notes_under_appserver,  # noqa: E402
                            notes_under_gunicorn, start_notes, start_wsgi)

@pytest.fixture
def short_tmp():
    """A fresh directory with a short path, for what puts unix sockets below it (./demo's work
    directory): tmp_path can be too long for a socket's 108 bytes once pytest's temp root is
    not /tmp (run-tests gives each build its own)."""
    d = tempfile.mkdtemp(prefix="h.", dir="/tmp")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def procs(tmp_path):
    ps = Processes(tmp_path)
    yield ps
    ps.stop_all()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The edge tests' certificates, all from one throwaway CA (ca), each made on first use:
    for a.test an ECDSA (serial 1001), an RSA (1002), a second ECDSA (1003) and one valid only
    from next year; for b.test an ECDSA one (2001). Each is (cert_path, key_path)."""
    return LazyPKI(tmp_path_factory.mktemp("pki"), {
        "a_ec": dict(name="a.test", key_type="ec", serial=1001),
        "a_rsa": dict(name="a.test", key_type="rsa", serial=1002),
        "b_ec": dict(name="b.test", key_type="ec", serial=2001),
        "a_ec2": dict(name="a.test", key_type="ec", serial=1003),
        "future": dict(name="a.test", key_type="ec", start="future")})


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The edge tests' files: a static tree (www) with a file of each type, an index in a
    subfolder, precompressed siblings, a symlink out of it and one inside it; a secret beside
    it; an ACME webroot (acme) with one challenge."""
    d = tmp_path_factory.mktemp("site")
    www = d / "www"
    (www / "sub").mkdir(parents=True)
    (www / "index.html").write_text("<h1>home</h1>\n")
    (www / "sub" / "index.html").write_text("<h1>sub</h1>\n")
    (www / "style.css").write_text("body { color: red }\n")
    (www / "app.js").write_text("console.log(1)\n")
    (www / "data.json").write_text('{"a": 1}\n')
    (www / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    (www / "digits.txt").write_text("0123456789" * 10)
    (www / "page.html").write_text("plain page " * 20)
    (www / "page.html.gz").write_bytes(b"GZ-VARIANT")
    (www / "page.html.br").write_bytes(b"BR-VARIANT")
    (www / "space name.txt").write_text("spaced\n")
    (d / "secret.txt").write_text("TOP-SECRET\n")
    os.symlink(d / "secret.txt", www / "escape.txt")
    os.symlink("style.css", www / "inside-link.css")
    acme = d / "acme"
    (acme / ".well-known" / "acme-challenge").mkdir(parents=True)
    (acme / ".well-known" / "acme-challenge" / "tok_EN-123").write_text("tok_EN-123.thumbprint")
    (acme / "outside.txt").write_text("NOT-A-CHALLENGE")
    return {"dir": d, "www": str(www), "acme": str(acme)}


@pytest.fixture
def start_edge(procs, pki, site):
    """start_edge(*extra, https=True, workers=1, name="edge", sites=None, upstreams=None,
    env=None): the edge on free ports serving site a.test with pki's ECDSA certificate and the
    site's files under / and /static/; with upstreams, proxying to them instead (only
    /static/ is files, of /); or the site flags in sites. Then the ACME webroot and extra."""
    def start(*extra, https=True, workers=1, name="edge", sites=None, upstreams=None,
              env=None):
        a_test = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1]]
        if upstreams is not None:
            sites = a_test + ["--static", "/static/=/"]
            for u in upstreams:
                sites += ["--upstream", u]
        elif sites is None:
            sites = a_test + ["--static", f"/static/={site['www']}", "--static", f"/={site['www']}"]
        return hearthkit.edge.start_edge(procs, *sites, "--acme-webroot", site["acme"], *extra,
                                         https=https, workers=workers, name=name, env=env)
    return start


@pytest.fixture
def upstream(tmp_path):
    """The path of a Unix socket where hearthkit.upstreams.Upstream answers (its connections
    counted afresh for the test)."""
    Upstream.connections = []
    path = tmp_path / "app.sock"
    srv = start_upstream(path)
    yield str(path)
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def stack(tmp_path, procs):
    """A supervisor Stack (hearthkit.supervisor) under the test's directory, not started."""
    return Stack(tmp_path, procs)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A throwaway CA and a 127.0.0.1/localhost certificate for Pebble's own API (the Debian
    package ships no test certificate); certd trusts the CA through --ca-bundle."""
    return make_test_pki(tmp_path_factory.mktemp("pebble-tls"), "DNS:localhost",
                         "IP:127.0.0.1")


@pytest.fixture(scope="session")
def pebble(tmp_path_factory, tls_files):
    """Pebble for the run (certd's files share it): nonce rejection on, the real edge serving
    its challenges."""
    p = Pebble(tmp_path_factory.mktemp("pebble"), challenges="edge", tls=tls_files,
               validity=3600)
    yield p
    p.stop()


@pytest.fixture
def make_pebble(tmp_path, tls_files):
    """make_pebble(challenge_server=True, validity=3600, eab=None): a Pebble of the test's own;
    without challenge_server, the test serves Pebble's challenges (on p.http_port) itself."""
    started = []

    def make(challenge_server=True, validity=3600, **kw):
        p = Pebble(tmp_path / f"pebble{len(started)}", tls=tls_files, validity=validity,
                   challenges="edge" if challenge_server else None, **kw)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


# The example Flask site under each WSGI server the tests know: Debian's Gunicorn (a peer,
# checked in the normal run only: the sanitizer run is about our code), and hearth's appserver.
NOTES_SERVERS = [
    pytest.param(notes_under_gunicorn, id="gunicorn", marks=pytest.mark.skipif(
        SANITIZED, reason="a peer: checked in the normal run")),
    pytest.param(notes_under_appserver, id="appserver"),
]


@pytest.fixture(params=NOTES_SERVERS)
def notes_server(request, procs):
    """start(db_path) serves the notes site under each server in turn; returns the port."""
    return lambda db_path: start_notes(procs, request.param, db_path)


def pytest_configure(config):
    config.addinivalue_line("markers", "hearth_only(reason): the server under test must be "
                            "hearth (Gunicorn has no such option); skipped under Gunicorn")
    config.addinivalue_line("markers", "gunicorn_differs(reason): a rule hearth must meet and "
                            "Gunicorn does not; a strict xfail under Gunicorn, which shows "
                            "the test can fail")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if WSGI_SERVER == "hearth":
            continue
        m = item.get_closest_marker("hearth_only")
        if m:
            item.add_marker(pytest.mark.skip(reason="hearth only: " + m.args[0]))
        m = item.get_closest_marker("gunicorn_differs")
        if m:
            item.add_marker(pytest.mark.xfail(strict=True,
                                              reason="Gunicorn differs: " + m.args[0]))


@pytest.fixture
def wsgi(procs, tmp_path):
    """start_wsgi bound to this test's processes and directory: wsgi('app:app', workers=2)."""
    return lambda app, **kw: start_wsgi(procs, tmp_path, app, **kw)
