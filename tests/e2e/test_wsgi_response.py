"""The WSGI bridge, response side (issue 11): start_response and exc_info, what the server
refuses to put on the wire, streaming and framing, close(), wsgi.file_wrapper, wsgi.errors and
exceptions, as a client and an operator (the error log) see them. HEARTH_WSGI_SERVER=gunicorn
runs them against Gunicorn (see hearthkit.wsgi.start_wsgi)."""
import os
import re
import socket
import time

import pytest

from hearthkit.clients import parse_responses, read_until_close, recv_until
from hearthkit.procs import wait_until


def logged_after(server, mark, pattern, timeout=5):
    """Wait until the error log, past the first `mark` characters, matches pattern."""
    wait_until(lambda: re.search(pattern, server.log()[mark:], re.M | re.S), timeout=timeout,
               what=f"{pattern!r} in the error log")


def assert_aborted(r, first=b""):
    """The answer started (status sent) and then the connection ended inside its body."""
    assert r.status == 200 and r.framing in ("chunked", "content-length"), r
    assert not r.complete, r
    assert r.body.startswith(first), r


# ---- start_response ----------------------------------------------------------------------


@pytest.mark.gunicorn_differs("it keeps the replaced response's headers (X-First)")
def test_exc_info_replaces_a_response_not_yet_sent(wsgi):
    server = wsgi("start_response_app:app")
    r = server.get("/replace-before")
    assert (r.status, r.body) == (503, b"replaced\n")
    assert r.header("x-second") == ["1"] and r.header("x-first") == []


@pytest.mark.gunicorn_differs("it sends the headers on an empty item: exc_info re-raises")
def test_exc_info_replaces_after_an_empty_item(wsgi):
    """Headers go out with the first non-empty item (PEP 3333), so a response whose iterable
    yielded only b"" so far can still be replaced."""
    server = wsgi("start_response_app:app")
    r = server.get("/replace-after-empty")
    assert (r.status, r.body, r.complete) == (503, b"replaced\n", True), r
    assert r.header("x-second") == ["1"] and r.header("x-first") == []


def test_exc_info_after_headers_reraises_and_aborts(wsgi):
    server = wsgi("start_response_app:app")
    mark = len(server.log())
    r = server.get("/exc-after")
    assert_aborted(r, b"partial\n")
    assert b"must never be sent" not in r.body
    logged_after(server, mark, r"ValueError: too late to change")


def test_latin1_header_value_is_sent_as_its_byte(wsgi):
    server = wsgi("start_response_app:app")
    s = server.connect()
    s.sendall(b"GET /latin-1-header HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert b"\r\nX-Latin-1: caf\xe9\r\n" in read_until_close(s)


def test_write_callable(wsgi):
    server = wsgi("start_response_app:app")
    r = server.get("/write")
    assert (r.status, r.body, r.complete) == (200, b"one,two,three\n", True)


# ---- what the server refuses ----------------------------------------------------------------

def differs(path, reason):
    return pytest.param(path, marks=pytest.mark.gunicorn_differs(reason))


BAD_STATUS = "status lines are not checked: 20.1 sends the app's bytes as they are"
BAD_HEADER = "20.1 answers 400 Bad Request (blaming the client) and logs nothing"
REFUSED = [
    "/twice",
    differs("/no-start-response", "it sends the status line 'HTTP/1.1 None'"),
    *(differs(p, BAD_STATUS) for p in ["/status-crlf", "/status-lf", "/status-ctl",
                                       "/status-bytes", "/status-not-a-code",
                                       "/status-four-digits"]),
    *(differs(p, BAD_HEADER) for p in ["/value-crlf", "/value-lf", "/value-cr", "/value-nul",
                                       "/value-ctl", "/value-del", "/name-crlf", "/name-colon",
                                       "/name-space", "/value-not-latin1"]),
    "/value-int", "/value-bytes", "/name-bytes",
    differs("/str-item-first", "it sends the headers before it checks the first item"),
]


@pytest.mark.parametrize("path", REFUSED)
def test_invalid_response_before_headers_is_a_500_and_logged(wsgi, path):
    """start_response called twice or never, a status or header with CR/LF/control bytes, a
    name or value that is not a str, a str body item: the client gets a plain 500, never a
    byte the app chose, and the error log names the request."""
    server = wsgi("invalid_app:app")
    mark = len(server.log())
    s = server.connect()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    answer = read_until_close(s)
    (r,) = parse_responses(answer)
    assert r.status == 500, answer
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert b"X-Injected" not in answer and b"must never be sent" not in answer
    assert b"X-A" not in head  # none of the app's headers
    for line in head.split(b"\r\n")[1:]:
        assert re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+: [\x20-\x7e]*", line), line
    logged_after(server, mark, re.escape(path))
    assert server.get("/twice").status == 500  # and the worker carries on


def test_str_item_after_headers_aborts(wsgi):
    server = wsgi("invalid_app:app")
    mark = len(server.log())
    assert_aborted(server.get("/str-item-later"), b"first bytes\n")
    logged_after(server, mark, r"(?i)\bbytes?\b")  # what is wrong with the item


@pytest.mark.gunicorn_differs("its log line names the path but not the method")
def test_exception_before_headers_is_a_500_with_traceback_in_the_log(wsgi):
    server = wsgi("invalid_app:app")
    mark = len(server.log())
    r = server.get("/raise-before?q=1")
    assert r.status == 500 and b"probe failure" not in r.body
    logged_after(server, mark, r"GET /raise-before")
    logged_after(server, mark, r"Traceback \(most recent call last\):.*"
                               r"RuntimeError: probe failure before the headers")


def test_exception_after_headers_aborts_the_connection(wsgi):
    server = wsgi("invalid_app:app")
    mark = len(server.log())
    assert_aborted(server.get("/raise-after"), b"first bytes\n")
    logged_after(server, mark, r"Traceback \(most recent call last\):.*"
                               r"RuntimeError: probe failure after the headers")


# ---- streaming and framing ----------------------------------------------------------------


def test_response_streams_as_produced(wsgi, tmp_path):
    """/stream yields its first chunk, then waits for the file `go`: the client must hold the
    first chunk before the test creates it."""
    server = wsgi("response_app:app")
    go = tmp_path / "go"
    s = server.connect(timeout=5)
    s.sendall(f"GET /stream?{go} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    got = recv_until(s, b"first chunk\n")  # times out if the server holds the chunk back
    assert b"last chunk" not in got
    go.touch()
    (r,) = parse_responses(got + read_until_close(s))
    assert (r.status, r.framing, r.complete) == (200, "chunked", True), r
    assert r.body == b"first chunk\nlast chunk\n"


def test_a_long_response_does_not_hold_up_other_clients(wsgi, tmp_path):
    """Eight clients connect at once; the first one's response streams for as long as the
    test wants, the other seven ask for a short answer. With two workers, one is busy with
    the long response and the other free: all seven must be answered meanwhile (Gunicorn's
    sync worker accepts a connection only when it can serve it). A worker that took idle
    connections and then ran a long application call leaves them waiting for it."""
    import selectors
    server = wsgi("response_app:app", workers=2)
    go = tmp_path / "go"
    socks = [server.connect(timeout=5) for _ in range(8)]
    socks[0].sendall(f"GET /stream?{go} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                     .encode())
    recv_until(socks[0], b"first chunk\n")
    sel = selectors.DefaultSelector()
    answers = {}
    for s in socks[1:]:
        s.sendall(b"GET /pieces HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        sel.register(s, selectors.EVENT_READ)
        answers[s] = b""
    deadline = time.monotonic() + 5
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            piece = key.fileobj.recv(65536)
            answers[key.fileobj] += piece
            if not piece:
                sel.unregister(key.fileobj)
    waiting = len(sel.get_map())
    go.touch()
    assert b"last chunk" in read_until_close(socks[0])
    for s in socks[1:]:
        s.close()
    assert waiting == 0, f"{waiting} of 7 short requests waited for the long response"
    assert all(parse_responses(a)[0].body == b"abcdef\n" for a in answers.values())


def test_no_content_length_is_chunked_on_1_1_and_close_delimited_on_1_0(wsgi):
    server = wsgi("response_app:app")
    r = server.get("/pieces")
    assert (r.framing, r.complete, r.body) == ("chunked", True, b"abcdef\n"), r
    r = server.get("/pieces", version="HTTP/1.0")
    assert r.header("transfer-encoding") == [] and r.header("content-length") == []
    assert (r.framing, r.body) == ("close", b"abcdef\n"), r


def test_content_length_caps_the_body(wsgi):
    server = wsgi("response_app:app")
    s = server.connect()
    s.sendall(b"GET /cl-more HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    answer = read_until_close(s)
    assert answer.endswith(b"\r\n\r\n01234"), answer
    (r,) = parse_responses(answer)
    assert (r.status, r.body, r.complete) == (200, b"01234", True)


def test_app_cannot_set_framing_headers(wsgi):
    """Transfer-Encoding, Connection and Keep-Alive from the app are not sent: the body the
    app returned arrives whole and framed by the server (never double-chunked or cut)."""
    server = wsgi("response_app:app")
    s = server.connect()
    s.sendall(b"GET /hop-by-hop HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    answer = read_until_close(s)
    (r,) = parse_responses(answer)
    assert (r.status, r.complete, r.body) == (200, True, b"0\r\n\r\nplain body\n"), answer
    assert len(r.header("transfer-encoding")) <= 1 and r.header("keep-alive") == []
    assert "timeout=99" not in answer.decode("latin-1")


@pytest.mark.gunicorn_differs("it closes the connection and logs nothing")
def test_short_body_aborts_and_is_logged(wsgi):
    server = wsgi("response_app:app")
    mark = len(server.log())
    r = server.get("/cl-less")
    assert_aborted(r, b"01234")
    assert r.body == b"01234"
    # the operator learns that a response went out short of its declared length
    logged_after(server, mark, r"(?i)(abort|truncat|short|fewer).*content-length"
                               r"|content-length.*(abort|truncat|short|fewer)")


@pytest.mark.parametrize("method,path", [
    pytest.param("HEAD", "/head-body", marks=pytest.mark.gunicorn_differs(
        "it sends the app's body after a HEAD's headers")),
    pytest.param("GET", "/204", marks=pytest.mark.gunicorn_differs(
        "it sends the app's body after a 204")),
    pytest.param("GET", "/304", marks=pytest.mark.gunicorn_differs(
        "it sends the app's body after a 304")),
])
def test_no_body_on_head_204_304(wsgi, method, path):
    server = wsgi("response_app:app")
    s = server.connect()
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    answer = read_until_close(s)
    head, sep, rest = answer.partition(b"\r\n\r\n")
    assert sep and rest == b"", answer
    assert b"transfer-encoding" not in head.lower()
    if method == "HEAD":
        assert re.search(rb"\r\nContent-Length: 5\r\n", head + b"\r\n", re.I), head


# ---- close() -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/complete", "/raise", "/str", "/forever"])
def test_iterable_close_is_called_on_every_path(wsgi, tmp_path, path):
    """Complete, an exception mid-body, a str item, and the client leaving mid-stream."""
    server = wsgi("close_app:app")
    record = tmp_path / "closed.txt"
    s = server.connect()
    s.sendall(f"GET {path}?{record} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    if path == "/forever":
        assert s.recv(1024)  # the stream started; now the client goes away
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    else:
        read_until_close(s)
    wait_until(lambda: record.exists() and record.read_text(), what="close() recorded")
    assert record.read_text() == f"closed {path}\n"
    # the worker survived it and serves the next one
    assert server.get(f"/complete?{tmp_path / 'next.txt'}").body == b"all of it\n"


# ---- wsgi.file_wrapper --------------------------------------------------------------------


def serve_file(server, tmp_path, kind, size, expect=lambda data: data):
    """The app serves a random file through wsgi.file_wrapper; the body must be
    expect(file's bytes). Returns the calls the app recorded on the file object (its read()
    sizes, then close) once the file is closed."""
    data = os.urandom(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    r = server.get(f"/{kind}?{path}")
    want = expect(data)
    assert (r.status, r.complete, len(r.body), r.body == want) == (200, True, len(want), True)
    record = tmp_path / "data.bin.record"
    wait_until(lambda: record.exists() and "close" in record.read_text(), what="file closed")
    return record.read_text().splitlines()


def test_file_wrapper_real_file_is_sent_without_read(wsgi, tmp_path):
    """A file with a fileno: sent by the kernel (sendfile), so the app's read() never runs."""
    assert serve_file(wsgi("file_wrapper_app:app"), tmp_path, "real", 300_000) == ["close"]


@pytest.mark.gunicorn_differs("its sendfile starts at byte 0 whatever the file's position")
def test_file_wrapper_starts_at_the_current_position(wsgi, tmp_path):
    serve_file(wsgi("file_wrapper_app:app"), tmp_path, "real-offset", 50_000,
               lambda data: data[1000:])


def test_file_wrapper_keeps_to_content_length(wsgi, tmp_path):
    serve_file(wsgi("file_wrapper_app:app"), tmp_path, "real-cl", 50_000, lambda data: data[:100])


def test_file_wrapper_without_fileno_is_read_in_blocks(wsgi, tmp_path):
    calls = serve_file(wsgi("file_wrapper_app:app"), tmp_path, "blocks", 100_000)
    assert calls[-1] == "close" and calls.count("close") == 1
    assert set(calls[:-1]) == {"read 8192"} and len(calls) - 1 >= 100_000 // 8192


# ---- wsgi.errors ---------------------------------------------------------------------------


def test_wsgi_errors_goes_to_the_error_log(wsgi):
    server = wsgi("errors_app:app")
    assert server.get("/?m4rk3r").body == b"logged\n"
    server.wait_log(r"probe write m4rk3r")
    server.wait_log(r"probe writelines m4rk3r")
