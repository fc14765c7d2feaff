"""What an idle HTTP/2 connection keeps in the edge (bench row 12d): nothing of the streams it
has served (nghttp2 would keep up to 128 closed ones, and its table of streams, for the
connection's life), nor the session's frame buffer and stream table once it has been idle a
moment (edge/http2_mem.c); and the frames a client may still send on a stream the edge has
forgotten get the answer nghttp2 would have given."""
import time

import pytest

import h2edge
from h2edge import h2client
from h2wire import CANCEL, STREAM_CLOSED, data, headers, request_block, rst_stream
from hearthkit.wsgi import SANITIZED

CONNECTIONS = 100
REQUESTS = 20  # per connection, as a page with its assets
# Per idle connection, OpenSSL's part included (about 14 KB): about 20 KB measured; 33 KB while
# the edge kept the closed streams, the stream table's page, its HPACK encoder's table and the
# HTTP/1.1 state.
MAX_BYTES_PER_CONNECTION = 24 * 1024


@pytest.fixture
def edge(procs, tmp_path):
    e = h2edge.start(procs, tmp_path, "--max-body-size", "64k")
    assert e.served()
    return e


@pytest.mark.skipif(SANITIZED, reason="RSS under ASan is the sanitizer's")
def test_idle_connections_keep_no_streams_nor_pages(edge):
    for _ in range(5):  # the first handshakes set up OpenSSL's caches for good
        edge.served()
    before = edge.rss_kib()
    held = []
    try:
        for _ in range(CONNECTIONS):
            c = h2client.Client(edge)
            sids = [c.request("GET", "/static/1k.html") for _ in range(REQUESTS)]
            assert all(a.status == 200 for a in c.wait(*sids))
            held.append(c)
        time.sleep(0.2)  # idle for more than the 10 ms after which the pages go
        grown = (edge.rss_kib() - before) * 1024 / CONNECTIONS
    finally:
        for c in held:
            c.close()
    assert grown < MAX_BYTES_PER_CONNECTION, f"{grown:.0f} bytes per idle h2 connection"


def test_data_after_the_client_ended_a_forgotten_stream_is_a_connection_error(edge):
    """RFC 9113 5.1: DATA on a stream closed after the client's END_STREAM ends the connection
    (STREAM_CLOSED), however many streams later."""
    w = h2edge.h2wire.connect(edge)
    for sid in range(1, 40, 2):
        w.send(headers(sid, request_block("GET", "/static/1k.html")))
        assert w.response(sid)[0] == 200
    w.send(data(1, b"late"))
    w.goaway(STREAM_CLOSED)
    w.close()


def test_data_in_flight_on_a_stream_the_edge_reset_is_ignored(edge):
    """A body the edge refused (413 before it is read, then RST_STREAM) may still be on its
    way: that DATA is ignored, and the connection serves on."""
    w = h2edge.h2wire.connect(edge)
    w.send(headers(1, request_block("POST", "/echo", extra=[("content-length", "100000")]),
                   end_stream=False))
    assert w.response(1)[0] == 413
    w.send(data(1, b"x" * 1000), data(1, b"y" * 1000, end_stream=True))
    w.send(headers(3, request_block("GET", "/static/1k.html")))
    assert w.response(3)[0] == 200
    w.alive()
    w.close()


def test_data_after_the_client_reset_is_a_connection_error(edge):
    w = h2edge.h2wire.connect(edge)
    w.send(headers(1, request_block("POST", "/echo"), end_stream=False), rst_stream(1, CANCEL))
    w.alive()
    w.send(data(1, b"late"))
    w.goaway(STREAM_CLOSED)
    w.close()

