"""RFC 9113 5.1 (stream states), 5.1.1 (identifiers), 5.1.2 (concurrency), 5.4 (error
handling) and 8.1 (the frames of one request): frames sent to a stream in the wrong state."""
import pytest

from h2peers import NO_TRAILERS, breaks
from h2wire import (CANCEL, FRAME_SIZE_ERROR, GOAWAY, INITIAL_WINDOW_SIZE,
                    MAX_CONCURRENT_STREAMS, PING, PROTOCOL_ERROR, REFUSED_STREAM, STREAM_CLOSED,
                    continuation, data, frame, headers, literal, priority, request_block,
                    rst_stream, window_update)

BLOCK = request_block()


# --- idle -------------------------------------------------------------------------------------

IDLE_FRAMES = {
    "DATA": pytest.param(data(1, b"x"), marks=breaks(nginx="ignores DATA on an idle stream")),
    "RST_STREAM": pytest.param(rst_stream(1, CANCEL),
                               marks=breaks(nginx="ignores RST_STREAM on an idle stream")),
    "WINDOW_UPDATE": pytest.param(window_update(1, 100),
                                  marks=breaks(nginx="ignores WINDOW_UPDATE on an idle stream")),
    "CONTINUATION": continuation(1, BLOCK),
}


@pytest.mark.parametrize("sent", IDLE_FRAMES.values(), ids=IDLE_FRAMES.keys())
def test_frame_on_an_idle_stream(conn, sent):
    """5.1 idle: any frame but HEADERS or PRIORITY is a connection error PROTOCOL_ERROR."""
    conn.send(sent)
    conn.goaway(PROTOCOL_ERROR)


def test_priority_on_an_idle_stream_is_accepted(conn):
    conn.send(priority(1))
    conn.alive()


# --- half-closed (remote) ---------------------------------------------------------------------

def half_closed_remote(connect):
    """Stream 1 after the client's END_STREAM, with the answer held back by a zero window:
    the server can send its HEADERS but not one byte of DATA, so the stream stays put."""
    w = connect((INITIAL_WINDOW_SIZE, 0))
    w.send(headers(1, BLOCK))
    return w


HALF_CLOSED_ERRORS = {
    "DATA": (data(1, b"x"), [STREAM_CLOSED]),
    "HEADERS": pytest.param(headers(1, BLOCK), [STREAM_CLOSED], marks=breaks(
        nginx="answers GOAWAY PROTOCOL_ERROR, not STREAM_CLOSED")),
    # 6.10 also forbids a CONTINUATION that follows no open field block (PROTOCOL_ERROR)
    "CONTINUATION": (continuation(1, BLOCK), [STREAM_CLOSED, PROTOCOL_ERROR]),
}


@pytest.mark.parametrize("sent,codes", HALF_CLOSED_ERRORS.values(),
                         ids=HALF_CLOSED_ERRORS.keys())
def test_frame_on_a_half_closed_remote_stream(connect, sent, codes):
    """5.1 half-closed (remote): frames other than WINDOW_UPDATE, PRIORITY and RST_STREAM are
    a stream error STREAM_CLOSED."""
    w = half_closed_remote(connect)
    w.send(sent)
    w.stream_error(1, *codes)


def test_window_update_on_a_half_closed_remote_stream(connect):
    """5.1: WINDOW_UPDATE is what a half-closed (remote) stream waits for: the answer flows."""
    w = half_closed_remote(connect)
    w.send(window_update(1, 65535))
    status, _, body = w.response(1)
    assert status == 200 and body == w.server.file("index.html")


@pytest.mark.parametrize("sent", [priority(1, 3), rst_stream(1, CANCEL)],
                         ids=["PRIORITY", "RST_STREAM"])
def test_frame_allowed_on_a_half_closed_remote_stream(connect, sent):
    w = half_closed_remote(connect)
    w.send(sent)
    w.alive()


# --- closed -----------------------------------------------------------------------------------

def reset_by_client(connect):
    """Stream 1 opened and then reset by the client."""
    w = connect()
    w.open_stream(1)
    w.send(rst_stream(1, CANCEL))
    return w


RESET_ERRORS = {
    "DATA": pytest.param(data(1, b"x"), [STREAM_CLOSED],
                         marks=breaks(nginx="ignores DATA after the client's RST_STREAM")),
    "HEADERS": (headers(1, BLOCK), [STREAM_CLOSED, PROTOCOL_ERROR]),
    "CONTINUATION": (continuation(1, BLOCK), [STREAM_CLOSED, PROTOCOL_ERROR]),
}


@pytest.mark.parametrize("sent,codes", RESET_ERRORS.values(), ids=RESET_ERRORS.keys())
def test_frame_after_the_client_reset_the_stream(connect, sent, codes):
    """5.1 closed: any frame but PRIORITY after a RST_STREAM is a stream error STREAM_CLOSED
    (HEADERS also reuses an identifier, 5.1.1; CONTINUATION follows no field block, 6.10:
    both PROTOCOL_ERROR)."""
    w = reset_by_client(connect)
    w.send(sent)
    w.stream_error(1, *codes)


def finished(conn):
    """Stream 1 closed both ways: a whole request, a whole answer."""
    conn.send(headers(1, BLOCK))
    conn.response(1)
    return conn


CLOSED_ERRORS = {
    "DATA": pytest.param(data(1, b"x"), [STREAM_CLOSED], marks=breaks(
        nginx="ignores DATA on a closed stream",
        caddy="answers with a stream error (RST_STREAM), not a connection error")),
    "HEADERS": (headers(1, BLOCK), [STREAM_CLOSED, PROTOCOL_ERROR]),
    "CONTINUATION": (continuation(1, BLOCK), [STREAM_CLOSED, PROTOCOL_ERROR]),
}


@pytest.mark.parametrize("sent,codes", CLOSED_ERRORS.values(), ids=CLOSED_ERRORS.keys())
def test_frame_on_a_closed_stream(conn, sent, codes):
    """5.1 closed: a frame after END_STREAM went both ways is a connection error
    STREAM_CLOSED (HEADERS reuse an identifier and CONTINUATION follows no field block:
    PROTOCOL_ERROR is right for those too)."""
    finished(conn).send(sent)
    conn.goaway(*codes)


@pytest.mark.parametrize("sent", [priority(1, 3), window_update(1, 1), rst_stream(1, CANCEL)],
                         ids=["PRIORITY", "WINDOW_UPDATE", "RST_STREAM"])
def test_frame_allowed_on_a_just_closed_stream(conn, sent):
    """5.1 closed: PRIORITY always, and WINDOW_UPDATE or RST_STREAM sent just as the stream
    closed, are ignored."""
    finished(conn).send(sent)
    conn.alive()


# --- 5.1.1 stream identifiers -----------------------------------------------------------------

def test_even_stream_identifier(conn):
    """5.1.1: a client's streams are odd; an even one is a connection error."""
    conn.send(headers(2, BLOCK))
    conn.goaway(PROTOCOL_ERROR)


def test_decreasing_stream_identifier(conn):
    """5.1.1: a new stream's identifier is above every one the client opened before."""
    conn.send(headers(5, BLOCK))
    conn.response(5)
    conn.send(headers(3, BLOCK))
    conn.goaway(PROTOCOL_ERROR)


def test_streams_may_skip_identifiers(conn):
    """5.1.1: opening stream 7 first closes the idle streams below it; it is answered."""
    conn.send(headers(7, BLOCK))
    assert conn.response(7)[0] == 200


def test_largest_stream_identifier(conn):
    conn.send(headers(0x7FFFFFFF, BLOCK))
    assert conn.response(0x7FFFFFFF)[0] == 200


# --- 5.1.2 concurrency ------------------------------------------------------------------------

def test_more_streams_than_the_advertised_limit(connect):
    """5.1.2: a HEADERS frame beyond SETTINGS_MAX_CONCURRENT_STREAMS is a stream error
    PROTOCOL_ERROR or REFUSED_STREAM. A zero window keeps each answered stream open."""
    w = connect((INITIAL_WINDOW_SIZE, 0))
    limit = w.server_settings.get(MAX_CONCURRENT_STREAMS)
    if limit is None or limit > 1000:
        pytest.skip(f"the server sets no usable stream limit ({limit})")
    w.send(b"".join(headers(1 + 2 * i, BLOCK) for i in range(limit + 1)))
    w.stream_error(1 + 2 * limit, PROTOCOL_ERROR, REFUSED_STREAM)


# --- 5.4.1 connection errors ------------------------------------------------------------------

def test_connection_error_sends_goaway_then_closes(conn):
    """5.4.1: after a connection error the server sends GOAWAY and closes the TCP connection."""
    conn.send(frame(PING, 0, 0, b"\0" * 6))
    conn.closed()
    assert [f for f in conn.seen if f.type == GOAWAY][-1].error_code == FRAME_SIZE_ERROR


# --- 8.1 the frames of one request ------------------------------------------------------------

def test_second_headers_without_end_stream(conn):
    """8.1: after the request's HEADERS, another HEADERS (trailers) must end the stream;
    without END_STREAM the request is malformed: stream error PROTOCOL_ERROR."""
    conn.open_stream(1)
    conn.send(data(1, b"body"), headers(1, literal("x-trail", "yes"), end_stream=False))
    conn.stream_error(1, PROTOCOL_ERROR)


@breaks(nginx=NO_TRAILERS)
def test_trailers_end_a_request(conn):
    """8.1: a request's body may be followed by a trailer section that ends the stream."""
    conn.open_stream(1)
    conn.send(data(1, b"body"), headers(1, literal("x-trail", "yes")))
    status, _, body = conn.response(1)
    assert (status, body) == (200, b"body")

