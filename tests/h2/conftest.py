"""Fixtures of the HTTP/2 suite: the server under test (HEARTH_H2_TARGET: hearth, nginx or
caddy, or several joined by commas; hearth when unset) and connections to it."""
import os

import pytest

import h2peers
import h2wire

TARGETS = [t for t in os.environ.get("HEARTH_H2_TARGET", "hearth").split(",") if t]


def pytest_configure(config):
    config.addinivalue_line("markers", "peer_xfail(**peers): the named peers break the RFC "
                                       "here (strict xfail for them only)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        target = getattr(item, "callspec", None) and item.callspec.params.get("server")
        for mark in item.iter_markers("peer_xfail"):
            if target in mark.kwargs:
                item.add_marker(pytest.mark.xfail(strict=True,
                                                  reason=f"{target}: {mark.kwargs[target]}"))


@pytest.fixture(scope="session")
def echo_upstream():
    srv = h2peers.start_echo()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="session", params=TARGETS)
def server(request, tmp_path_factory, echo_upstream):
    target = h2peers.start(request.param, str(tmp_path_factory.mktemp(request.param)),
                           echo_upstream)
    yield target
    target.stop()


@pytest.fixture
def connect(server):
    """connect(*settings) -> a Wire past the preface and the SETTINGS exchange; all are closed
    when the case ends."""
    opened = []

    def open_one(*pairs):
        w = h2wire.connect(server, *pairs)
        opened.append(w)
        return w
    yield open_one
    for w in opened:
        w.close()


@pytest.fixture
def conn(connect):
    return connect()
