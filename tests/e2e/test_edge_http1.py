"""The edge's HTTP/1.1 connections: header and keep-alive timeouts, pipelining, body and head
size limits, connection slots shed when a worker is full, slowloris crowds, smuggling attempts
and other hostile bytes, HTTP/1.0 clients and empty lines."""
import json
import os
import re
import socket
import time

import pytest

from hearthkit.clients import (client_ctx, https_get, raw, read_until_close, status_of, statuses,
                               tls_requests)
from hearthkit.procs import wait_until


def test_header_timeout_closes_slow_client(start_edge):
    e = start_edge("--header-timeout", "1s")
    s = socket.create_connection(("127.0.0.1", e.http), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert 0.8 < time.monotonic() - t0 < 3


def test_keepalive_timeout_closes_idle_connection(start_edge):
    e = start_edge("--keepalive-timeout", "1s")
    s = socket.create_connection(("127.0.0.1", e.http), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    time.sleep(0.2)
    first = s.recv(4096)
    assert status_of(first) == 301
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert 0.6 < time.monotonic() - t0 < 3


def test_keepalive_and_pipelining(start_edge, pki):
    e = start_edge()
    req = b"GET /style.css HTTP/1.1\r\nHost: a.test\r\n\r\n"
    resp = raw(e.https, req * 3 + b"GET /app.js HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
               tls=client_ctx(pki["ca"]))
    assert resp.count(b"HTTP/1.1 200 OK") == 4
    assert resp.endswith(b"console.log(1)\n")


def test_many_pipelined_requests_in_one_write_are_all_answered(start_edge, pki):
    """200 requests arriving in one go: the edge answers some, lets the other connections have
    the worker, and comes back for the rest, although no new byte arrives (it used to stall
    after 64 steps until the client gave up)."""
    e = start_edge()
    req = b"GET /style.css HTTP/1.1\r\nHost: a.test\r\n\r\n"
    last = b"GET /app.js HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    resp = raw(e.https, req * 199 + last, tls=client_ctx(pki["ca"]))
    assert resp.count(b"HTTP/1.1 200 OK") == 200
    assert resp.endswith(b"console.log(1)\n")


def test_body_too_large_413_and_header_too_large_431(start_edge, pki, upstream):
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--upstream", f"unix:{upstream}"]
    e = start_edge("--max-body-size", "1k", "--max-header-size", "2k",
                   sites=sites)
    tls = client_ctx(pki["ca"])
    resp = raw(e.https, b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5000\r\n\r\n",
               tls=tls)
    assert status_of(resp) == 413
    resp = raw(e.https, b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                        b"\r\n800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\n", tls=tls)
    assert status_of(resp) == 413
    resp = raw(e.https, b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n",
               tls=tls)
    assert status_of(resp) == 431
    r, body = https_get(e, pki["ca"], "/echo", method="POST", body=b"z" * 1000)
    assert r.status == 200 and json.loads(body)["body_len"] == 1000


def test_max_connections_sheds_idle_then_oldest_head_and_waits_only_when_all_are_busy(
        start_edge, pki, upstream):
    """A full worker makes room for a newcomer by closing an idle keep-alive connection, else the
    one that has waited longest for its request head; only while every slot serves a request does
    the newcomer wait in the backlog (it used to wait there whatever the slots were doing)."""
    e = start_edge("--max-connections", "3",
                   upstreams=[f"unix:{upstream}"])

    def connect():
        return socket.create_connection(("127.0.0.1", e.http), timeout=5)

    def still_open(s):
        s.settimeout(0.2)
        try:
            return s.recv(10) != b""
        except socket.timeout:
            return True

    def newcomer_status():
        s = connect()
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        return status_of(read_until_close(s))

    heads = [connect(), connect()]
    time.sleep(0.1)
    idle = connect()
    idle.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert status_of(idle.recv(4096)) == 301
    assert newcomer_status() == 301
    assert not still_open(idle) and still_open(heads[0]) and still_open(heads[1])
    heads.append(connect())
    time.sleep(0.1)
    assert newcomer_status() == 301
    assert not still_open(heads[0]) and still_open(heads[1]) and still_open(heads[2])
    for h in heads:
        h.close()

    busy = tls_requests(e, pki["ca"], 3, b"GET /slow?t=1.5 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    time.sleep(0.3)
    s = connect()  # sits in the backlog while every slot serves a request
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    s.settimeout(0.5)
    with pytest.raises(socket.timeout):
        s.recv(100)
    s.settimeout(5)
    assert status_of(s.recv(4096)) == 301  # a slow request ended: its connection made room
    for b in busy:
        b.close()


def test_slowloris_crowd_shed_and_summarised_while_a_normal_client_is_served(
        start_edge, procs, pki):
    """300 connections that never finish their head, against 100 slots: each newcomer takes the
    slot of the oldest of them, so a normal client is served at once; while the worker is under
    pressure (75 of its 100 slots) the rest are closed at the short pressure_header_timeout, not
    the 60 s header_timeout (once enough have gone, the pressure and the short timeout end: the
    last few may keep the normal one); one log line for the interval counts all of it."""
    e = start_edge("--max-connections", "100", "--pressure-header-timeout",
                   "1s", "--pressure-log-interval", "3s")
    slow = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", e.http), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-a: ")
        slow.append(s)
    # served, not left waiting behind them (the slow heads would hold every slot for the 60 s
    # header_timeout; https_get gives up after 10 s)
    for _ in range(5):
        r, body = https_get(e, pki["ca"], "/")
        assert r.status == 200 and body == b"<h1>home</h1>\n"

    def closed(s):
        try:
            return s.recv(10) == b""
        except ConnectionResetError:
            return True

    for s in slow[:200]:  # the oldest made room for the newest at once
        assert closed(s)
    for s in slow[200:]:
        s.settimeout(0.1)
    deadline = time.monotonic() + 3  # well past the 1 s timeout and its 250 ms sweep
    newest_closed = 0
    for s in slow[200:]:  # and the newest went at the short timeout, at least down to 75 open
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            newest_closed += closed(s)
        except TimeoutError:
            pass
    assert newest_closed >= 25, newest_closed
    slots_lines = lambda: [x for x in procs.log(e.proc).splitlines() if "connection slots" in x]
    wait_until(lambda: slots_lines(), timeout=6, what="the slots summary")
    time.sleep(0.5)
    lines = slots_lines()
    assert len(lines) == 1, lines
    m = re.search(r"shed (\d+) idle keep-alive and (\d+) unfinished request heads.* closed "
                  r"(\d+) heads at pressure_header_timeout", lines[0])
    # The normal client's own connections may still count as idle keep-alive when a newcomer
    # needs a slot (its close not read yet): they go first, and each stands for one head less.
    assert m, lines[0]
    idle, heads = int(m.group(1)), int(m.group(2))
    assert idle <= 5 and 200 <= idle + heads <= 205 and int(m.group(3)) >= 25, lines[0]
    for s in slow:
        s.close()


SMUGGLING = [
    b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\n folded: x\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a.test\n\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
    b"GET /\x7f HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: a.test/../x\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: a.test:80:80\r\n\r\n",
    b"GET /echo HTTP/1.0\r\nHost: a.test@b\r\n\r\n",
]


def test_hostile_requests_refused_and_process_survives(start_edge, pki, upstream):
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--upstream", f"unix:{upstream}"]
    e = start_edge("--header-timeout", "1s", sites=sites)
    tls = client_ctx(pki["ca"])
    for bad in SMUGGLING:
        for port, t in ((e.http, None), (e.https, tls)):
            resp = raw(port, bad, tls=t)
            # the plain listener never reads a body: a broken one there only meets a redirect
            ok = (400, 308) if port == e.http and b"\r\n-1\r\n" in bad else (400,)
            assert resp == b"" or status_of(resp) in ok, (bad, resp[:100])
    # empty lines before a request line are skipped, up to the head limit (16 KiB)
    for garbage in (os.urandom(4000), b"\x16\x03\x03\x00\x05hello", b"\r\n" * 9000):
        raw(e.https, garbage)
        raw(e.http, garbage)
    assert e.proc.poll() is None
    r, _ = https_get(e, pki["ca"], "/echo")
    assert r.status == 200


def test_bytes_that_cannot_start_a_request_are_refused_at_once(start_edge, pki):
    """300 random bytes without a line end used to hold a connection for the header timeout;
    nginx answers 400 at the first byte that cannot begin a request line, and so does the edge.
    A CR or LF first is still waited on: a request line may follow an empty line."""
    import random
    e = start_edge()
    rnd = random.Random(13)
    garbage = bytes(b for b in rnd.randbytes(600) if b not in b"\r\n")[:300]
    tls = client_ctx(pki["ca"])
    for port, t in ((e.http, None), (e.https, tls)):
        t0 = time.monotonic()
        resp = raw(port, garbage, tls=t)
        assert status_of(resp) == 400 and time.monotonic() - t0 < 2, resp[:100]
    s = socket.create_connection(("127.0.0.1", e.http), timeout=0.5)
    s.sendall(b"\r")
    with pytest.raises(socket.timeout):
        s.recv(100)
    s.close()


def test_http10_without_host_empty_lines_and_400_closes(start_edge, pki, upstream):
    e = start_edge(upstreams=[f"unix:{upstream}"])
    tls = client_ctx(pki["ca"])
    # HTTP/1.0 needs no Host; the request goes upstream as HTTP/1.1, which does
    resp = raw(e.https, b"GET /echo HTTP/1.0\r\n\r\n", tls=tls)
    assert status_of(resp) == 200, resp[:200]
    got = json.loads(resp.partition(b"\r\n\r\n")[2])
    assert [v for k, v in got["headers"] if k.lower() == "host"] == ["a.test"]
    # an empty line before the request line is ignored (RFC 9112 2.2), as after a POST body
    resp = raw(e.https, b"\r\nGET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
               tls=tls)
    assert statuses(resp) == [200], resp[:200]
    resp = raw(e.https, b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\n\r\nx\r\n"
               b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", tls=tls)
    assert statuses(resp) == [200, 200], resp[:400]
    # a 400 from any handler ends the connection: the request after it is never read
    resp = raw(e.https, b"GET /static/%zz HTTP/1.1\r\nHost: a.test\r\n\r\n"
               b"GET /echo HTTP/1.1\r\nHost: a.test\r\n\r\n", tls=tls)
    assert statuses(resp) == [400] and b"\r\nConnection: close\r\n" in resp, resp[:400]


def test_http10_client_gets_dechunked_body(start_edge, pki, upstream):
    e = start_edge(upstreams=[f"unix:{upstream}"])
    resp = raw(e.https, b"GET /big?n=70000&chunked HTTP/1.0\r\nHost: a.test\r\n\r\n",
               tls=client_ctx(pki["ca"]))
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert body == b"x" * 70000
