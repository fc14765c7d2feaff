"""RFC 9113 3: starting HTTP/2 over TLS (ALPN) and the connection preface."""
import pytest

from h2peers import breaks
from h2wire import (DATA, GOAWAY, PREFACE, PROTOCOL_ERROR, SETTINGS, Wire, frame, headers, ping,
                    request_block, settings)


def test_alpn_selects_h2(server):
    """3.2: a TLS server that speaks HTTP/2 picks "h2" when the client offers it first."""
    assert server.alpn() == "h2"


def test_server_preface_is_a_settings_frame(server):
    """3.4: the server's connection preface is a SETTINGS frame, its first frame."""
    w = Wire(server)
    try:
        w.send(PREFACE + settings())
        first = w.next_frame()
        assert first.type == SETTINGS and not first.flags & 1, first
    finally:
        w.close()


def test_preface_then_request(conn):
    """3.4: after the prefaces, a request is answered."""
    conn.send(headers(1, request_block()))
    status, _, body = conn.response(1)
    assert status == 200 and body == conn.server.file("index.html")


def test_settings_may_arrive_with_the_preface_in_one_write(server):
    """3.4: the client may send its first requests right after its preface, without waiting
    for the server's."""
    w = Wire(server)
    try:
        w.send(PREFACE + settings() + headers(1, request_block()))
        status, _, _ = w.response(1)
        assert status == 200
    finally:
        w.close()


BAD_PREFACES = {
    "wrong magic": b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings(),
    "an HTTP/1.1 request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "truncated magic then SETTINGS": PREFACE[:16] + settings(),
}


@pytest.mark.parametrize("data", BAD_PREFACES.values(), ids=BAD_PREFACES.keys())
def test_invalid_preface_closes_the_connection(server, data):
    """3.4: an invalid connection preface is a connection error PROTOCOL_ERROR: the server
    closes the TCP connection (a GOAWAY before, if any, carries PROTOCOL_ERROR)."""
    w = Wire(server)
    try:
        w.send(data)
        w.closed()
        for f in w.seen:
            if f.type == GOAWAY:
                assert f.error_code == PROTOCOL_ERROR, f
    finally:
        w.close()


NOT_SETTINGS = breaks(nginx="takes any frame after the preface, SETTINGS or not")
FIRST_FRAMES = {
    "PING": pytest.param(ping(), marks=NOT_SETTINGS),
    "HEADERS": pytest.param(headers(1, request_block()), marks=NOT_SETTINGS),
    "DATA": pytest.param(frame(DATA, 0, 1, b"x"), marks=NOT_SETTINGS),
}


@pytest.mark.parametrize("first", FIRST_FRAMES.values(), ids=FIRST_FRAMES.keys())
def test_preface_not_followed_by_settings(server, first):
    """3.4: the preface "MUST be followed by a SETTINGS frame"; anything else is a connection
    error PROTOCOL_ERROR."""
    w = Wire(server)
    try:
        w.send(PREFACE + first)
        w.goaway(PROTOCOL_ERROR)
    finally:
        w.close()
