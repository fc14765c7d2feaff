"""RFC 9113 4 (frame format, frame size, field blocks), 5.5 (extensions), 6 (each frame
type's rules) and 7 (error codes), frame by frame."""
import struct

import pytest

from h2peers import breaks
from h2wire import (CANCEL, CONTINUATION, DATA, END_HEADERS, END_STREAM, FRAME_SIZE_ERROR,
                    GOAWAY, HEADERS, MAX_FRAME_SIZE, NO_ERROR, PADDED, PING, PRIORITY,
                    PROTOCOL_ERROR, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE, Failure,
                    continuation, data, frame, goaway_frame, headers, ping, priority,
                    request_block, rst_stream, settings, window_update)

BLOCK = request_block()


# --- 4.1 frame format: what is unknown or undefined is ignored ---------------------------------

def test_unknown_frame_type_on_stream_0_is_ignored(conn):
    """4.1, 5.5: a frame of an unknown type is ignored and discarded."""
    conn.send(frame(0x20, 0xFF, 0, b"an extension frame"))
    conn.alive()


def test_unknown_frame_type_on_an_open_stream_is_ignored(conn):
    """5.5: an unknown frame on an open stream changes nothing: its request completes."""
    conn.open_stream(1)
    conn.send(frame(0xFE, 0, 1, b"x" * 1000), data(1, b"body", end_stream=True))
    status, _, body = conn.response(1)
    assert (status, body) == (200, b"body")


def test_undefined_flags_on_ping_are_ignored(conn):
    """4.1: flags a frame type does not define are ignored (PING defines only ACK)."""
    conn.send(frame(PING, 0xFE, 0, b"flagsfla"))
    conn.wait_for(lambda f: f.type == PING and f.flags & 1 and f.payload == b"flagsfla",
                  "PING ACK")


def test_undefined_flags_on_headers_are_ignored(conn):
    """4.1: HEADERS with every undefined flag set (0x2, 0x10, 0x40, 0x80) is a request."""
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS | 0xD2, 1, BLOCK))
    assert conn.response(1)[0] == 200


def test_undefined_flags_on_data_are_ignored(conn):
    conn.open_stream(1)
    conn.send(frame(DATA, END_STREAM | 0xF6, 1, b"abc"))
    assert conn.response(1)[2] == b"abc"


def test_undefined_flags_on_settings_are_ignored(conn):
    conn.send(frame(SETTINGS, 0xFE, 0, b""))
    conn.wait_for(lambda f: f.type == SETTINGS and f.flags & 1, "SETTINGS ACK")
    conn.alive()


def test_reserved_bit_of_the_stream_identifier_is_ignored(conn):
    """4.1: the R bit before the stream identifier MUST be ignored when received."""
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 0x80000001, BLOCK))
    assert conn.response(1)[0] == 200


def test_reserved_bit_of_a_window_increment_is_ignored(conn):
    """6.9: the reserved bit of WINDOW_UPDATE is ignored: the increment is 1."""
    conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x80000001)))
    conn.alive()


# --- 4.2 frame size ---------------------------------------------------------------------------

def max_frame(conn):
    return conn.server_settings.get(MAX_FRAME_SIZE, 16384)


def oversized(ftype, flags, sid, length, payload=b""):
    """A frame header announcing `length` octets, followed by at most 16 KiB of them: the
    server has to judge the header alone (it knows its limit before reading the payload)."""
    body = (payload + b"\0" * length)[:min(length, 16385)]
    return frame(ftype, flags, sid, body, length=length)


def test_data_of_16384_octets_is_accepted(conn):
    """4.2: every endpoint takes frames of up to 2^14 octets."""
    conn.open_stream(1, extra=[("content-length", "16384")])
    conn.send(data(1, b"d" * 16384, end_stream=True))
    status, _, body = conn.response(1)
    assert status == 200 and len(body) == 16384


@breaks(nginx="answers PROTOCOL_ERROR, not FRAME_SIZE_ERROR")
def test_data_larger_than_max_frame_size(conn):
    """4.2: a frame over SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR (for DATA a stream
    error is enough)."""
    conn.open_stream(1)
    conn.send(oversized(DATA, 0, 1, max_frame(conn) + 1))
    conn.stream_error(1, FRAME_SIZE_ERROR)


def test_headers_larger_than_max_frame_size(conn):
    """4.2: a field block frame over the limit alters the connection's state: connection
    error FRAME_SIZE_ERROR."""
    conn.send(oversized(HEADERS, END_STREAM | END_HEADERS, 1, max_frame(conn) + 1, BLOCK))
    conn.goaway(FRAME_SIZE_ERROR)


@breaks(nginx="answers PROTOCOL_ERROR, not FRAME_SIZE_ERROR")
def test_continuation_larger_than_max_frame_size(conn):
    conn.send(headers(1, BLOCK, end_headers=False),
              oversized(CONTINUATION, END_HEADERS, 1, max_frame(conn) + 1))
    conn.goaway(FRAME_SIZE_ERROR)


def test_settings_larger_than_max_frame_size(conn):
    """4.2: a SETTINGS frame over the limit: connection error FRAME_SIZE_ERROR."""
    length = (max_frame(conn) // 6 + 1) * 6  # a multiple of 6, so only the size is wrong
    conn.send(oversized(SETTINGS, 0, 0, length))
    conn.goaway(FRAME_SIZE_ERROR)


# --- 4.3 field blocks are contiguous ----------------------------------------------------------

INTERRUPTIONS = {
    "PRIORITY same stream": priority(1),
    "PRIORITY other stream": priority(3),
    "HEADERS other stream": headers(3, BLOCK),
    "DATA same stream": data(1, b"x"),
    "PING": ping(),
    "SETTINGS": settings(),
    "WINDOW_UPDATE": window_update(0, 1),
    "RST_STREAM same stream": rst_stream(1, CANCEL),
    "unknown extension frame": frame(0x20, 0, 0, b"ext"),  # 5.5
}


@pytest.mark.parametrize("interruption", INTERRUPTIONS.values(), ids=INTERRUPTIONS.keys())
def test_frame_inside_a_field_block(conn, interruption):
    """4.3, 6.2, 6.10, 5.5: a field block is a contiguous run of HEADERS and CONTINUATION
    frames; any other frame, or one for another stream, is a connection error
    PROTOCOL_ERROR."""
    conn.send(headers(1, BLOCK, end_headers=False), interruption, continuation(1, b""))
    conn.goaway(PROTOCOL_ERROR)


# --- 6.1 DATA ---------------------------------------------------------------------------------

def test_data_on_stream_0(conn):
    conn.send(data(0, b"x"))
    conn.goaway(PROTOCOL_ERROR)


PAD_ERRORS = {"pad length equals the payload": 4, "pad length beyond the payload": 200}


@pytest.mark.parametrize("pad", PAD_ERRORS.values(), ids=PAD_ERRORS.keys())
def test_data_with_invalid_pad_length(conn, pad):
    """6.1: padding as long as the payload or longer is a connection error PROTOCOL_ERROR."""
    conn.open_stream(1)
    conn.send(frame(DATA, PADDED | END_STREAM, 1, bytes([pad]) + b"abc"))
    conn.goaway(PROTOCOL_ERROR)


BODIES = {
    "one frame": [data(1, b"hello", end_stream=True)],
    "several frames": [data(1, b"he"), data(1, b"ll"), data(1, b"o", end_stream=True)],
    "padding 0": [data(1, b"hello", end_stream=True, pad=0)],
    "padding 10": [data(1, b"he", pad=10), data(1, b"llo", end_stream=True, pad=10)],
    "padding 255": [data(1, b"hello", end_stream=True, pad=255)],
    "empty last frame": [data(1, b"hello"), data(1, b"", end_stream=True)],
}


@pytest.mark.parametrize("frames", BODIES.values(), ids=BODIES.keys())
def test_data_frames_make_the_body(conn, frames):
    """6.1: DATA frames, padded or not, carry the request body; padding is not part of it."""
    conn.open_stream(1)
    conn.send(*frames)
    status, _, body = conn.response(1)
    assert (status, body) == (200, b"hello")


# --- 6.2 HEADERS ------------------------------------------------------------------------------

def test_headers_on_stream_0(conn):
    conn.send(headers(0, BLOCK))
    conn.goaway(PROTOCOL_ERROR)


@breaks(caddy="resets the stream (RST_STREAM) where a connection error is required")
def test_headers_with_invalid_pad_length(conn):
    """6.2: padding longer than what follows the Pad Length: connection error."""
    conn.send(frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1,
                    bytes([len(BLOCK) + 1]) + BLOCK))
    conn.goaway(PROTOCOL_ERROR)


HEADER_FORMS = {
    "padding 0": dict(pad=0),
    "padding 64": dict(pad=64),
    "padding 255": dict(pad=255),
    "priority": dict(prio=(0, 200, False)),
    "priority exclusive": dict(prio=(0, 1, True)),
    "priority and padding": dict(prio=(0, 256, False), pad=20),
}


@pytest.mark.parametrize("form", HEADER_FORMS.values(), ids=HEADER_FORMS.keys())
def test_headers_with_padding_or_priority(conn, form):
    conn.send(headers(1, BLOCK, **form))
    status, _, body = conn.response(1)
    assert status == 200 and body == conn.server.file("index.html")


def test_headers_depending_on_itself(conn):
    """5.3.1: a stream cannot depend on itself: stream error PROTOCOL_ERROR."""
    conn.send(headers(1, BLOCK, prio=(1, 16, False)))
    conn.stream_error(1, PROTOCOL_ERROR)


# --- 6.3 PRIORITY -----------------------------------------------------------------------------

def test_priority_on_stream_0(conn):
    conn.send(priority(0, 1))
    conn.goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [4, 6])
def test_priority_of_wrong_length(conn, length):
    """6.3: a PRIORITY frame of other than 5 octets is a stream error FRAME_SIZE_ERROR."""
    conn.send(frame(PRIORITY, 0, 1, b"\0\0\0\0\x10\0"[:length]))
    conn.stream_error(1, FRAME_SIZE_ERROR)


def test_priority_depending_on_itself(conn):
    conn.send(priority(1, depends_on=1))
    conn.stream_error(1, PROTOCOL_ERROR)


PRIORITIES = {
    "weight 1": dict(weight=1),
    "weight 256": dict(weight=256),
    "dependency": dict(depends_on=3),
    "exclusive": dict(depends_on=3, exclusive=True),
}


@pytest.mark.parametrize("prio", PRIORITIES.values(), ids=PRIORITIES.keys())
def test_priority_is_accepted(conn, prio):
    """6.3: PRIORITY on an idle stream is allowed, whatever it says."""
    conn.send(priority(5, **prio))
    conn.alive()


def test_priority_for_idle_stream_then_headers_on_a_lower_one(conn):
    """5.1, 6.3: PRIORITY does not open a stream, so a lower identifier may still open."""
    conn.send(priority(5), headers(3, BLOCK))
    assert conn.response(3)[0] == 200


# --- 6.4 RST_STREAM and 7 error codes ---------------------------------------------------------

def test_rst_stream_on_stream_0(conn):
    conn.send(rst_stream(0, CANCEL))
    conn.goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [3, 5])
def test_rst_stream_of_wrong_length(conn, length):
    """6.4: RST_STREAM of other than 4 octets: connection error FRAME_SIZE_ERROR."""
    conn.open_stream(1)
    conn.send(frame(RST_STREAM, 0, 1, b"\0\0\0\x08\0"[:length]))
    conn.goaway(FRAME_SIZE_ERROR)


@pytest.mark.parametrize("code", [CANCEL, 0xFF, 0xFFFFFFFF], ids=["CANCEL", "0xff", "max"])
def test_rst_stream_is_accepted(conn, code):
    """6.4, 7: a client's RST_STREAM, even with a code no one defined, ends its stream and
    nothing else."""
    conn.open_stream(1)
    conn.send(rst_stream(1, code))
    conn.alive()
    conn.send(headers(3, BLOCK))
    assert conn.response(3)[0] == 200


# --- 6.7 PING ---------------------------------------------------------------------------------

def test_ping_is_answered_with_the_same_payload(conn):
    conn.send(ping(b"h2\x00spec!"))
    got = conn.wait_for(lambda f: f if f.type == PING else None, "PING")
    assert got.flags & 1 and got.payload == b"h2\x00spec!"


def test_ping_ack_is_not_answered(conn):
    """6.7: a PING with ACK gets no answer: the next ACK seen is for the PING after it."""
    conn.send(ping(b"ackfirst", ack=True), ping(b"realping"))
    got = conn.wait_for(lambda f: f if f.type == PING else None, "PING")
    assert got.payload == b"realping", got


def test_ping_on_a_stream(conn):
    conn.send(frame(PING, 0, 1, b"\0" * 8))
    conn.goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 7, 9])
def test_ping_of_wrong_length(conn, length):
    conn.send(frame(PING, 0, 0, b"\0" * length))
    conn.goaway(FRAME_SIZE_ERROR)


# --- 6.8 GOAWAY -------------------------------------------------------------------------------

def test_goaway_on_a_stream(conn):
    conn.send(goaway_frame(0, NO_ERROR, stream_id=1))
    conn.goaway(PROTOCOL_ERROR)


GOAWAYS = {
    "NO_ERROR": goaway_frame(0, NO_ERROR),
    "unknown code": goaway_frame(0, 0xFF),
    "with debug data": frame(GOAWAY, 0, 0, struct.pack(">II", 0, NO_ERROR) + b"bye now"),
}


@pytest.mark.parametrize("goaway", GOAWAYS.values(), ids=GOAWAYS.keys())
def test_client_goaway_is_accepted(conn, goaway):
    """6.8, 7: a client's GOAWAY, with any code, is no error: the server answers the PING
    after it or closes quietly, never with an error code of its own."""
    conn.send(goaway, ping(b"stillok?"))
    for f in conn.frames():
        if f.type == GOAWAY and f.error_code != NO_ERROR:
            raise Failure(f"server answered a client GOAWAY with {f!r}")
        if f.type == PING and f.payload == b"stillok?":
            return


# --- 6.10 CONTINUATION ------------------------------------------------------------------------

@pytest.mark.parametrize("pieces", [2, 3, len(BLOCK)], ids=["one", "two", "byte by byte"])
def test_field_block_in_continuation_frames(conn, pieces):
    """6.10: a field block split over HEADERS and any number of CONTINUATION frames."""
    step = -(-len(BLOCK) // pieces)
    parts = [BLOCK[i:i + step] for i in range(0, len(BLOCK), step)]
    frames = [headers(1, parts[0], end_headers=False)]
    frames += [continuation(1, p, end_headers=(i == len(parts) - 2))
               for i, p in enumerate(parts[1:])]
    conn.send(b"".join(frames))
    assert conn.response(1)[0] == 200


CONTINUATION_ERRORS = {
    "followed by DATA": [headers(1, BLOCK[:3], end_stream=False, end_headers=False),
                         continuation(1, BLOCK[3:], end_headers=False), data(1, b"x")],
    "on stream 0": [headers(1, BLOCK[:3], end_headers=False), continuation(0, BLOCK[3:])],
    "on another stream": [headers(1, BLOCK[:3], end_headers=False),
                          continuation(3, BLOCK[3:])],
    "after HEADERS with END_HEADERS": [headers(1, BLOCK, end_stream=False),
                                       continuation(1, b"")],
    "after CONTINUATION with END_HEADERS": [
        headers(1, BLOCK[:3], end_stream=False, end_headers=False),
        continuation(1, BLOCK[3:]), continuation(1, b"")],
    "after DATA": [headers(1, request_block("POST", "/echo"), end_stream=False),
                   data(1, b"x"), continuation(1, b"")],
}


@pytest.mark.parametrize("frames", CONTINUATION_ERRORS.values(), ids=CONTINUATION_ERRORS.keys())
def test_misplaced_continuation(conn, frames):
    """6.10: CONTINUATION must follow HEADERS or CONTINUATION without END_HEADERS, on the
    same stream; anything else is a connection error PROTOCOL_ERROR."""
    conn.send(b"".join(frames))
    conn.goaway(PROTOCOL_ERROR)


# --- 8.4 a client cannot push -----------------------------------------------------------------

def test_push_promise_from_a_client(conn):
    """8.4: servers MUST treat a PUSH_PROMISE as a connection error PROTOCOL_ERROR."""
    conn.open_stream(1)
    conn.send(frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + BLOCK))
    conn.goaway(PROTOCOL_ERROR)

