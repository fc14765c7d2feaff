"""Module ABI 1.1 end to end: bodies read while they arrive, answers sent while produced, the
server's framing rules (declared lengths, chunked, aborts), sendfile, reason phrases, the
conveniences (integer parameters, abort, cookies, request memory, HEARTH_APP), and a module
built for ABI 1.0 still loading."""
import hashlib
import json
import os
import re
import socket

import pytest

from hearthkit.clients import read_until_close
from test_appserver import UnixHTTPConnection, module, raw, request, start


@pytest.fixture
def app(procs, tmp_path):
    return start(procs, tmp_path, [module("mod_streaming"), module("mod_abi10"),
                                   module("mod_conveniences")], workers=1,
                 *["--max-body-size", "4m"])


def chunked(data, piece=7000):
    out = b""
    for i in range(0, len(data), piece):
        part = data[i:i + piece]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def test_body_is_streamed_in_whole_for_every_size_and_framing(app):
    for size in (0, 1, 65535, 65537, 3 << 20):
        body = os.urandom(size)
        expect = b"n=%d sum=%d\n" % (size, sum(body))
        assert request(app.sock, "/upload", "POST", body=body)[2] == expect
        answer = raw(app.sock, b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n" + chunked(body))
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(expect), answer[:200]


def test_body_over_the_limit_gets_413_even_when_chunked(app):
    body = os.urandom(5 << 20)
    answer = raw(app.sock, b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + chunked(body, 1 << 16), timeout=10)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]


def test_unread_rest_of_a_body_is_dropped_and_the_connection_goes_on(app):
    body = os.urandom(300_000)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(app.sock)
    s.sendall(b"POST /partial HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
              + b"GET /lines?n=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    answer = read_until_close(s)
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer
    assert b"read 10\n" in answer and answer.endswith(b"7\r\nline 0\n\r\n0\r\n\r\n"), answer


def test_streamed_answer_is_chunked_on_1_1_and_close_delimited_on_1_0(app):
    status, headers, body = request(app.sock, "/lines?n=500")
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert body == b"".join(b"line %d\n" % i for i in range(500))
    answer = raw(app.sock, b"GET /lines?n=2 HTTP/1.0\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert rest == b"line 0\nline 1\n"
    answer = raw(app.sock, b"HEAD /lines HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.endswith(b"\r\n\r\n") and b"line" not in answer


def test_declared_length_is_never_exceeded_and_a_short_body_aborts(app):
    answer = raw(app.sock, b"GET /sized HTTP/1.1\r\nHost: a\r\n\r\nGET /lines?n=1 HTTP/1.1\r\n"
                 b"Host: a\r\nConnection: close\r\n\r\n")
    first, _, second = answer.partition(b"0123456789")
    assert b"Content-Length: 10\r\n" in first and b"abcdefghij" not in answer
    assert second.startswith(b"HTTP/1.1 200 ")
    answer = raw(app.sock, b"GET /short HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"Content-Length: 100\r\n" in answer and answer.endswith(b"\r\n\r\nshort")
    app.wait_log(r"response aborted: the body ended after 5 of the 100 bytes")


def test_abort_truncates_a_chunked_answer(app):
    answer = raw(app.sock, b"GET /abort HTTP/1.1\r\nHost: a\r\n\r\n")
    assert answer.endswith(b"7\r\npartial\r\n"), answer
    app.wait_log(r"response aborted: the test module gives up")


def test_sendfile_sends_the_file(app, tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(5 << 20)
    path.write_bytes(data)
    status, headers, body = request(app.sock, f"/file?path={path}")
    assert status == 200 and int(headers["content-length"]) == len(data)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_reason_phrase_and_abi_1_0_module(app):
    answer = raw(app.sock, b"GET /reason HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 299 Fine Thanks\r\n")
    body = os.urandom(200_000)
    assert request(app.sock, "/old", "POST", body=body)[2] == b"abi 1.0 module, body 200000\n"


def test_integer_parameters_and_abort(app):
    assert request(app.sock, "/twice/21")[2] == b'{"twice":42}\n'
    assert request(app.sock, "/twice/-4")[2] == b'{"twice":-8}\n'
    for bad in ("12abc", "1e3", "99999999999999999999", "%20"):
        status, headers, body = request(app.sock, f"/twice/{bad}")
        assert status == 400 and headers["content-type"] == "application/json", bad
        assert json.loads(body)["error"].endswith("is not an integer")
    assert request(app.sock, "/page?page=3")[2] == b"page 3\n"
    assert request(app.sock, "/page")[2] == b"page 1\n"
    assert request(app.sock, "/page?page=x")[0] == 400


def test_request_memory_and_cookies(app):
    assert request(app.sock, "/doubled/ab")[2] == b"abab\n"
    c = UnixHTTPConnection(app.sock)
    c.request("GET", "/cookies")
    r = c.getresponse()
    assert r.read() == b"set 1 refused 1\n"
    assert sorted(r.headers.get_all("Set-Cookie")) == [
        "old=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",
        "remember=yes; Max-Age=3600; Domain=example.org",
        "session=abc123; Path=/; Secure; HttpOnly; SameSite=Lax",
    ]
    c.close()


def test_lower_case_method_refuses_the_module(procs, tmp_path):
    app = start(procs, tmp_path, [module("mod_badmethod")], workers=1, wait=False)
    assert app.proc.wait(timeout=10) == 1
    assert re.search(r"mod_badmethod.so: route 0 \(get /never\): method 'get' is not \"\*\" or an "
                     r"upper-case token", app.log()), app.log()
