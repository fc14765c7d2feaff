"""RFC 9113 6.5: SETTINGS (format, defined parameters and their ranges, synchronization)."""
import pytest

from h2peers import breaks
from h2wire import (ENABLE_PUSH, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, HEADER_TABLE_SIZE,
                    INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS, MAX_FRAME_SIZE,
                    MAX_HEADER_LIST_SIZE, PROTOCOL_ERROR, SETTINGS, frame, headers,
                    request_block, settings, window_update)

BLOCK = request_block()


def settings_ack(w):
    w.wait_for(lambda f: f.type == SETTINGS and f.flags & 1, "SETTINGS ACK")


# --- 6.5 format -------------------------------------------------------------------------------

def test_settings_ack_with_a_payload(conn):
    """6.5: a SETTINGS ACK with a payload is a connection error FRAME_SIZE_ERROR."""
    conn.send(frame(SETTINGS, 1, 0, b"\0\x04\0\0\0\x01"))
    conn.goaway(FRAME_SIZE_ERROR)


def test_settings_on_a_stream(conn):
    conn.send(frame(SETTINGS, 0, 1, b""))
    conn.goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [3, 5, 7, 13])
def test_settings_length_not_a_multiple_of_6(conn, length):
    conn.send(frame(SETTINGS, 0, 0, (b"\0\x04\0\0\x10\0" * 3)[:length]))
    conn.goaway(FRAME_SIZE_ERROR)


# --- 6.5.3 synchronization --------------------------------------------------------------------

def test_settings_are_acknowledged(conn):
    """6.5.3: a SETTINGS frame without ACK is answered with a SETTINGS ACK, at once."""
    conn.send(settings((MAX_CONCURRENT_STREAMS, 10)))
    settings_ack(conn)


@breaks(caddy="refuses a SETTINGS frame that repeats a parameter (GOAWAY PROTOCOL_ERROR)")
def test_several_values_apply_in_order(connect):
    """6.5.3: values in one frame are processed in order: the last INITIAL_WINDOW_SIZE (1)
    holds, so the answer's first DATA carries at most one octet."""
    w = connect()
    w.send(settings((INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)))
    settings_ack(w)
    w.send(headers(1, BLOCK))
    assert len(w.data_until_quiet(1, want=1)) == 1


def test_unknown_setting_is_ignored(conn):
    """6.5.2: an unknown identifier is ignored."""
    conn.send(settings((0xFF, 1), (0xABCD, 0xFFFFFFFF)))
    settings_ack(conn)
    conn.alive()


# --- 6.5.2 defined parameters -----------------------------------------------------------------

OUT_OF_RANGE = {
    "ENABLE_PUSH 2": ((ENABLE_PUSH, 2), PROTOCOL_ERROR),
    "ENABLE_PUSH 2^32-1": ((ENABLE_PUSH, 0xFFFFFFFF), PROTOCOL_ERROR),
    "INITIAL_WINDOW_SIZE 2^31": ((INITIAL_WINDOW_SIZE, 1 << 31), FLOW_CONTROL_ERROR),
    "INITIAL_WINDOW_SIZE 2^32-1": ((INITIAL_WINDOW_SIZE, 0xFFFFFFFF), FLOW_CONTROL_ERROR),
    "MAX_FRAME_SIZE 0": ((MAX_FRAME_SIZE, 0), PROTOCOL_ERROR),
    "MAX_FRAME_SIZE 16383": ((MAX_FRAME_SIZE, 16383), PROTOCOL_ERROR),
    "MAX_FRAME_SIZE 2^24": ((MAX_FRAME_SIZE, 1 << 24), PROTOCOL_ERROR),
    "MAX_FRAME_SIZE 2^32-1": ((MAX_FRAME_SIZE, 0xFFFFFFFF), PROTOCOL_ERROR),
}


@pytest.mark.parametrize("pair,code", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_setting_out_of_range(conn, pair, code):
    """6.5.2: ENABLE_PUSH other than 0/1 and MAX_FRAME_SIZE outside 2^14..2^24-1 are
    PROTOCOL_ERROR; INITIAL_WINDOW_SIZE above 2^31-1 is FLOW_CONTROL_ERROR."""
    conn.send(settings(pair))
    conn.goaway(code)


IN_RANGE = {
    "HEADER_TABLE_SIZE 0": (HEADER_TABLE_SIZE, 0),
    "HEADER_TABLE_SIZE 2^32-1": (HEADER_TABLE_SIZE, 0xFFFFFFFF),
    "ENABLE_PUSH 0": (ENABLE_PUSH, 0),
    "ENABLE_PUSH 1": (ENABLE_PUSH, 1),
    "MAX_CONCURRENT_STREAMS 0": (MAX_CONCURRENT_STREAMS, 0),
    "MAX_CONCURRENT_STREAMS 2^32-1": (MAX_CONCURRENT_STREAMS, 0xFFFFFFFF),
    "INITIAL_WINDOW_SIZE 0": (INITIAL_WINDOW_SIZE, 0),
    "INITIAL_WINDOW_SIZE 2^31-1": (INITIAL_WINDOW_SIZE, 0x7FFFFFFF),
    "MAX_FRAME_SIZE 2^14": (MAX_FRAME_SIZE, 1 << 14),
    "MAX_FRAME_SIZE 2^24-1": (MAX_FRAME_SIZE, (1 << 24) - 1),
    "MAX_HEADER_LIST_SIZE 2^32-1": (MAX_HEADER_LIST_SIZE, 0xFFFFFFFF),
}


@pytest.mark.parametrize("pair", IN_RANGE.values(), ids=IN_RANGE.keys())
def test_setting_at_the_edge_of_its_range(conn, pair):
    """6.5.2: the extreme allowed values are taken without complaint."""
    conn.send(settings(pair))
    settings_ack(conn)
    conn.alive()


def test_server_honours_max_frame_size(connect):
    """4.2, 6.5.2: the server's DATA frames never exceed the client's MAX_FRAME_SIZE (here
    the default 2^14, over a 1 MiB answer)."""
    w = connect((INITIAL_WINDOW_SIZE, 0x7FFFFFFF))
    w.send(window_update(0, 0x7FFFFFFF - 65535), headers(1, request_block(path="/1m.bin")))
    status, _, body = w.response(1, window_updates=False)
    assert status == 200 and len(body) == 1 << 20
    assert max(len(f.payload) for f in w.seen if f.stream_id == 1) <= 16384


def test_header_table_size_0_keeps_the_server_off_the_dynamic_table(connect):
    """6.5.2, RFC 7541 4.2: with HEADER_TABLE_SIZE 0 the server's encoder may not add to a
    dynamic table; a decoder holding none still reads every answer."""
    w = connect((HEADER_TABLE_SIZE, 0))
    w.decoder.header_table_size = 0
    w.decoder.max_allowed_table_size = 0
    for sid in (1, 3, 5):
        w.send(headers(sid, BLOCK))
        assert w.response(sid)[0] == 200
