"""RFC 9113 5.2 and 6.9: flow control, WINDOW_UPDATE and the initial window. The server's
answers must fit the windows the client grants; the client's window updates must be
valid."""
import pytest

from h2wire import (FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, INITIAL_WINDOW_SIZE, PROTOCOL_ERROR,
                    WINDOW_UPDATE, frame, headers, request_block, settings, window_update)

BLOCK = request_block()


# --- 6.9 WINDOW_UPDATE ------------------------------------------------------------------------

def test_window_update_of_0_on_the_connection(conn):
    """6.9: an increment of 0 for the connection window is a connection error."""
    conn.send(window_update(0, 0))
    conn.goaway(PROTOCOL_ERROR)


def test_window_update_of_0_on_a_stream(conn):
    """6.9: an increment of 0 for a stream is a stream error PROTOCOL_ERROR."""
    conn.open_stream(1)
    conn.send(window_update(1, 0))
    conn.stream_error(1, PROTOCOL_ERROR)


@pytest.mark.parametrize("sid,length", [(0, 3), (0, 5), (1, 3), (1, 5)],
                         ids=["connection 3", "connection 5", "stream 3", "stream 5"])
def test_window_update_of_wrong_length(conn, sid, length):
    """6.9: WINDOW_UPDATE of other than 4 octets is a connection error FRAME_SIZE_ERROR."""
    if sid:
        conn.open_stream(sid)
    conn.send(frame(WINDOW_UPDATE, 0, sid, b"\0\0\0\x01\0"[:length]))
    conn.goaway(FRAME_SIZE_ERROR)


@pytest.mark.parametrize("sid", [0, 1], ids=["connection", "stream"])
def test_window_update_is_accepted(conn, sid):
    if sid:
        conn.open_stream(sid)
    conn.send(window_update(sid, 1000))
    conn.alive()


def test_connection_window_above_2_31_minus_1(conn):
    """6.9.1: updates that take the connection window past 2^31-1 are a connection error
    FLOW_CONTROL_ERROR."""
    conn.send(window_update(0, 1 << 30), window_update(0, 1 << 30))
    conn.goaway(FLOW_CONTROL_ERROR)


def test_stream_window_above_2_31_minus_1(conn):
    """6.9.1: past 2^31-1 on a stream: stream error FLOW_CONTROL_ERROR. (The stream waits
    for its request body, so it is open whatever the server does meanwhile.)"""
    conn.open_stream(1)
    conn.send(window_update(1, 1 << 30), window_update(1, 1 << 30))
    conn.stream_error(1, FLOW_CONTROL_ERROR)


# --- 6.9.1 the server stays inside the windows ------------------------------------------------

def test_initial_window_of_1(connect):
    """6.9.1: with INITIAL_WINDOW_SIZE 1 the server sends one octet, then waits for a
    WINDOW_UPDATE; the rest follows it."""
    w = connect((INITIAL_WINDOW_SIZE, 1))
    w.send(headers(1, BLOCK))
    first = w.data_until_quiet(1, want=1)
    assert len(first) == 1
    w.send(window_update(1, 65535))
    status, _, rest = w.response(1)
    assert first + rest == w.server.file("index.html")


def test_initial_window_changed_after_the_request(connect):
    """6.9.2: a new INITIAL_WINDOW_SIZE adjusts the windows of streams already open: from 0
    (nothing may flow) to 1 (one octet) to 100 (the rest)."""
    w = connect((INITIAL_WINDOW_SIZE, 0))
    w.send(headers(1, BLOCK))
    assert w.data_until_quiet(1) == b""
    w.send(settings((INITIAL_WINDOW_SIZE, 1)))
    first = w.data_until_quiet(1, want=1)
    assert len(first) == 1
    w.send(settings((INITIAL_WINDOW_SIZE, 100)))
    status, _, rest = w.response(1)
    assert first + rest == w.server.file("index.html")


def test_negative_window(connect):
    """6.9.2: lowering INITIAL_WINDOW_SIZE below what a stream already used makes its window
    negative (5 sent, size now 3: -2); a WINDOW_UPDATE of 2 brings it to 0, not 2, so nothing
    flows until one more octet is granted."""
    w = connect((INITIAL_WINDOW_SIZE, 5))
    w.send(headers(1, BLOCK))
    first = w.data_until_quiet(1, want=5)
    assert len(first) == 5
    w.send(settings((INITIAL_WINDOW_SIZE, 3)), window_update(1, 2))
    assert w.data_until_quiet(1) == b""
    w.send(window_update(1, 1))
    second = w.data_until_quiet(1, want=1)
    assert len(second) == 1
    w.send(window_update(1, 1000))
    rest = w.response(1)[2]
    assert first + second + rest == w.server.file("index.html")


def test_initial_window_does_not_touch_the_connection_window(connect):
    """6.9.2: SETTINGS_INITIAL_WINDOW_SIZE changes stream windows only: with the connection
    window spent the answer waits for a connection-level WINDOW_UPDATE."""
    w = connect((INITIAL_WINDOW_SIZE, 0x7FFFFFFF))
    w.send(headers(1, request_block(path="/1m.bin")))
    got = w.data_until_quiet(1, want=65535)
    assert len(got) == 65535  # the connection window every connection starts with
    w.send(window_update(0, 1 << 20))
    rest = w.response(1, window_updates=False)[2]
    assert len(got) + len(rest) == 1 << 20
