"""Denial of service over HTTP/2: each attack runs against the edge, which must end the
attacker's connection (or its streams) and stay responsive to a normal client, with the worker's
memory bounded: rapid reset (CVE-2023-44487), CONTINUATION flood (CVE-2024-28182), server-caused
resets (MadeYouReset, CVE-2025-8671), SETTINGS, PING and empty-frame floods, an HPACK bomb, a
stream creation burst, and zero-window stalls."""
import time

import pytest

import h2edge
from h2edge import h2wire
from h2wire import (CONTINUATION, DATA, GOAWAY, INITIAL_WINDOW_SIZE, PING, RST_STREAM,
                    SETTINGS, frame, headers, integer, literal, request_block, rst_stream, string)

# The worker may grow by this much during an attack (buffers, nghttp2's state); an attack that
# could make it hold what it is sent would go far past it.
RSS_GROWTH_KIB = 40 * 1024
ENHANCE_YOUR_CALM_ = 11  # RFC 9113 7 (h2wire names the codes up to COMPRESSION_ERROR)


@pytest.fixture
def edge(procs, tmp_path):
    # requests per connection high enough that no attack ends at that limit instead of its own
    e = h2edge.start(procs, tmp_path, "--send-timeout", "1s", "--h2-max-requests", "100000")
    assert e.served()
    e.rss_before = e.rss_kib()
    return e


def still_fine(edge):
    assert edge.served(), "a normal client is not served"
    grown = edge.rss_kib() - edge.rss_before
    assert grown < RSS_GROWTH_KIB, f"worker RSS grew by {grown} KiB"


def ended(w, *codes):
    """The attacker's connection ends: GOAWAY with one of codes (then or later the close), or a
    close without one (nghttp2 drops a flooding peer at once)."""
    for f in w.frames(timeout=5):
        if f.type == GOAWAY:
            assert f.error_code in codes, f
            return f
    assert w.eof, "the attacker's connection is still open"


def test_rapid_reset(edge):
    """Each stream opened and cancelled at once: past nghttp2's budget (1000, then 33 a
    second) the connection ends (nghttp2 says INTERNAL_ERROR)."""
    w = h2wire.connect(edge)
    block = request_block(path="/slow")
    w.send(b"".join(headers(sid, block) + rst_stream(sid, 8) for sid in range(1, 6001, 2)))
    ended(w, h2wire.INTERNAL_ERROR, ENHANCE_YOUR_CALM_)
    still_fine(edge)


def test_continuation_flood(edge):
    w = h2wire.connect(edge)
    junk = literal("x-junk", "j" * 4000)
    w.send(headers(1, request_block(), end_headers=False),
           *[frame(CONTINUATION, 0, 1, junk) for _ in range(2000)])
    ended(w, ENHANCE_YOUR_CALM_, 1, 9)  # or PROTOCOL_ERROR / COMPRESSION_ERROR, or a close
    still_fine(edge)


def test_server_caused_resets(edge):
    """MadeYouReset: each stream is opened, then made malformed (more DATA than its
    content-length), so the edge resets it, after its request may have gone upstream. Sent 50
    at a time, a PING answered between, so no batch passes the concurrency limit."""
    w = h2wire.connect(edge)
    block = h2wire.block(h2wire.request_fields("POST", "/echo", extra=[("content-length", "1")]))
    sid, resets = 1, 0
    for _ in range(10):
        batch = b""
        for _ in range(50):
            batch += headers(sid, block, end_stream=False) + h2wire.data(sid, b"xx", True)
            sid += 2
        w.send(batch + h2wire.ping(b"batch!!!"))
        for f in w.frames(timeout=3):
            resets += f.type == RST_STREAM
            if f.type == GOAWAY:
                assert f.error_code == ENHANCE_YOUR_CALM_, f
                assert 150 < resets <= 250  # the budget: 200 at once
                still_fine(edge)
                return
            if f.type == PING and f.flags & h2wire.ACK:
                break
    raise AssertionError(f"{resets} resets and no GOAWAY")


@pytest.mark.parametrize("flood", [frame(SETTINGS, 0, 0), frame(PING, 0, 0, b"12345678"),
                                   frame(DATA, 0, 1)], ids=["SETTINGS", "PING", "empty DATA"])
def test_cheap_frame_flood(edge, flood):
    w = h2wire.connect(edge)
    w.open_stream(1)  # the empty DATA frames go to an open stream
    w.send(flood * 5000)
    ended(w, ENHANCE_YOUR_CALM_)
    still_fine(edge)


def test_hpack_bomb(edge):
    """One 4 KB field in the dynamic table, then blocks that name it thousands of times with a
    byte each: 16 KB on the wire would decode to 60 MB."""
    w = h2wire.connect(edge)
    big = bytes([0x40]) + string("x-bomb") + string("b" * 4000)  # literal, incremental indexing
    w.send(headers(1, request_block(path="/static/1k.html") + big))
    assert w.response(1)[0] == 200
    bomb = request_block(path="/static/1k.html") + integer(62, 7, 0x80) * 15000
    for sid in (3, 5, 7):
        w.send(headers(sid, bomb))
        assert w.response(sid)[0] == 431
    still_fine(edge)


def test_stream_creation_burst(edge):
    """Far more streams at once than SETTINGS_MAX_CONCURRENT_STREAMS allows: RFC 9113 5.1.2
    lets the edge refuse them or, as nghttp2 does once its limit is acknowledged, end the
    connection with PROTOCOL_ERROR."""
    w = h2wire.connect(edge)
    block = request_block(path="/slow")
    w.send(b"".join(headers(sid, block) for sid in range(1, 4001, 2)))
    ended(w, h2wire.PROTOCOL_ERROR, ENHANCE_YOUR_CALM_)
    still_fine(edge)


def test_zero_window_stall(edge):
    """Connections that ask for large answers and never open their windows: what the edge
    queues for them is bounded, and each stalled stream is reset after send_timeout."""
    conns = []
    for _ in range(4):
        w = h2wire.connect(edge, (INITIAL_WINDOW_SIZE, 0))
        w.send(b"".join(headers(sid, request_block(path="/big?n=4000000"))
                        for sid in range(1, 120, 2)))
        conns.append(w)
    time.sleep(0.5)
    grown = edge.rss_kib() - edge.rss_before
    assert grown < RSS_GROWTH_KIB, f"worker RSS grew by {grown} KiB while stalled"
    assert edge.served()
    cancelled = sum(1 for f in conns[0].frames(timeout=4)
                    if f.type == RST_STREAM and f.error_code == 8)
    assert cancelled > 0
    for w in conns:
        w.close()
    still_fine(edge)
