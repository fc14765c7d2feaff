"""The WSGI bridge, request side (issue 11): the environ a PEP 3333 application receives and
the wsgi.input stream, as seen from probe applications (tests/wsgi_apps) that answer what
they got. The server under test is hearth's appserver; HEARTH_WSGI_SERVER=gunicorn runs the
same tests against Gunicorn to check the tests themselves (see hearthkit.wsgi.start_wsgi)."""
import json

import pytest

from hearthkit.clients import parse_responses


def environ_of(server, target="/", **kw):
    r = server.request(kw.pop("method", "GET"), target, **kw)
    assert r.status == 200, (r, server.log()[-3000:])
    return json.loads(r.body)


# ---- environ --------------------------------------------------------------------------------


def test_required_keys_and_types(wsgi):
    # two workers: wsgi.multiprocess is True (Gunicorn says so only with more than one)
    server = wsgi("environ_app:app", workers=2)
    env = environ_of(server, "/some/where?a=1&b=%41")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/some/where"
    assert env["QUERY_STRING"] == "a=1&b=%41"
    assert env.get("CONTENT_TYPE", "") == "" and env.get("CONTENT_LENGTH", "") == ""
    assert isinstance(env["SERVER_NAME"], str) and env["SERVER_NAME"]
    assert env["SERVER_PORT"].isdigit()
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_HOST"] == "wsgi.test"
    assert env["wsgi.version"] == [1, 0]  # the tuple (1, 0), through JSON
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.input"]["methods"] == ["__iter__", "read", "readline", "readlines"]
    assert set(env["wsgi.errors"]["methods"]) >= {"write", "writelines", "flush"}
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False
    assert env["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.gunicorn_differs("20.1 says wsgi.multiprocess False with one worker")
def test_multiprocess_even_with_one_worker(wsgi):
    """Another process may run the app at the same time even with -w 1: the worker that
    replaces it on a reload, TTIN's new ones."""
    assert environ_of(wsgi("environ_app:app", workers=1))["wsgi.multiprocess"] is True


def test_server_port_is_the_port_the_request_came_in_on(wsgi):
    """CGI (RFC 3875 4.1.15), which PEP 3333 takes its keys from: SERVER_PORT is the port
    that received the request; the Host header is the client's to set (HTTP_HOST has it)."""
    server = wsgi("environ_app:app")
    env = environ_of(server, "/", headers=[])
    assert env["HTTP_HOST"] == "wsgi.test"
    assert env["SERVER_PORT"] == str(server.port)


def test_content_type_length_and_protocol_version(wsgi):
    server = wsgi("environ_app:app")
    env = environ_of(server, "/form", method="POST", body=b"a=1",
                     headers=[("Content-Type", "application/x-www-form-urlencoded")])
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "3"
    # the two are CGI variables, never HTTP_ ones (wsgiref.validate checks this too)
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert environ_of(server, "/", version="HTTP/1.0")["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_path_info_is_latin1_of_the_decoded_bytes_and_query_is_raw(wsgi):
    server = wsgi("environ_app:app")
    env = environ_of(server, "/caf%C3%A9/a%20b/%E9?x=caf%C3%A9&y=a+b&z=%2F&z=%zz")
    # PEP 3333: bytes percent-decoded, then each byte one latin-1 character
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9/a b/\u00e9"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8", "replace") == "/café/a b/\ufffd"
    assert env["QUERY_STRING"] == "x=caf%C3%A9&y=a+b&z=%2F&z=%zz"


def test_http_headers_become_http_keys(wsgi):
    server = wsgi("environ_app:app")
    env = environ_of(server, "/", headers=[("X-Custom-Thing", "v 1"), ("Accept", "*/*"),
                                           ("Cookie", "a=b; c=d")])
    assert env["HTTP_X_CUSTOM_THING"] == "v 1"
    assert env["HTTP_ACCEPT"] == "*/*"
    assert env["HTTP_COOKIE"] == "a=b; c=d"


@pytest.mark.gunicorn_differs("20.1 keeps the whitespace at a value's end")
def test_header_values_lose_surrounding_whitespace(wsgi):
    """RFC 9110 5.5: the whitespace around a field value is not part of it."""
    server = wsgi("environ_app:app")
    env = environ_of(server, "/", headers=[("X-Pad", "\t a  b \t ")])
    assert env["HTTP_X_PAD"] == "a  b"


@pytest.mark.gunicorn_differs("20.1 maps X-Auth_User to HTTP_X_AUTH_USER as well")
def test_header_names_with_underscore_are_dropped(wsgi):
    """X-Auth_User must not pass for X-Auth-User: both would be HTTP_X_AUTH_USER, and a proxy
    that sets X-Auth-User does not strip its underscore twin."""
    server = wsgi("environ_app:app")
    env = environ_of(server, "/", headers=[("X-Auth_User", "mallory"), ("X-Auth-User", "alice")])
    assert env["HTTP_X_AUTH_USER"] == "alice"
    env = environ_of(server, "/", headers=[("X-Auth_User", "mallory")])
    assert "HTTP_X_AUTH_USER" not in env
    assert "mallory" not in json.dumps(env)


@pytest.mark.gunicorn_differs("20.1 joins repeated headers with ',' and no space")
def test_repeated_headers_joined_with_comma_space(wsgi):
    server = wsgi("environ_app:app")
    env = environ_of(server, "/", headers=[("X-Rep", "a"), ("Accept", "text/html"),
                                           ("X-Rep", "b c"), ("X-Rep", "d")])
    assert env["HTTP_X_REP"] == "a, b c, d"


def test_mount_sets_script_name(wsgi):
    server = wsgi("environ_app:app", mount="/prefix")
    env = environ_of(server, "/prefix/a/b%20c?q=1")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == ("/prefix", "/a/b c",
                                                                           "q=1")
    env = environ_of(server, "/prefix")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/prefix", "")
    env = environ_of(server, "/prefix/")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/prefix", "/")


@pytest.mark.gunicorn_differs("20.1 hands any path to the app, cut at the first '/prefix'")
def test_mount_answers_404_outside_the_prefix(wsgi):
    server = wsgi("environ_app:app", mount="/prefix")
    for target in ["/", "/other", "/prefixed", "/pre", "/x/prefix/"]:
        r = server.get(target)
        assert r.status == 404, (target, r)
    assert server.get("/prefix/ok").status == 200


PROXY_HEADERS = [("X-Real-IP", "203.0.113.9"), ("X-Forwarded-Proto", "https")]


@pytest.mark.parametrize("peer", ["unix", "127.0.0.1"])
def test_trusted_peer_sets_url_scheme(wsgi, peer):
    server = wsgi("environ_app:app")
    env = environ_of(server, "/", headers=PROXY_HEADERS, unix=peer == "unix")
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.gunicorn_differs("20.1 has no X-Real-IP: REMOTE_ADDR stays the peer's address")
@pytest.mark.parametrize("peer", ["unix", "127.0.0.1"])
def test_trusted_peer_sets_remote_addr(wsgi, peer):
    server = wsgi("environ_app:app")
    env = environ_of(server, "/", headers=PROXY_HEADERS, unix=peer == "unix")
    assert env["REMOTE_ADDR"] == "203.0.113.9"


def untrusted(server, source):
    env = environ_of(server, "/", headers=PROXY_HEADERS, source=source)
    assert env["REMOTE_ADDR"] == source
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_REAL_IP"] == "203.0.113.9"  # still there, for what it is worth


def test_only_127_0_0_1_is_trusted_on_loopback(wsgi):
    """The issue trusts the unix socket and 127.0.0.1 (::1), where the edge connects from;
    not the rest of 127.0.0.0/8."""
    untrusted(wsgi("environ_app:app"), "127.0.0.2")


# ---- wsgi.input -----------------------------------------------------------------------------

BODY = b"line one\nline two\n\nthe last line, with no newline"
LINES = [b"line one\n", b"line two\n", b"\n", b"the last line, with no newline"]


def read_as(server, how, n=0, body=BODY, **kw):
    r = server.request("POST", f"/{how}?{n}", body=body, **kw)
    assert r.status == 200, (r, server.log()[-3000:])
    got = json.loads(r.body)
    got["pieces"] = [p.encode("latin-1") for p in got["pieces"]]
    return got


def test_input_read_n_read_all_readline_readlines_iteration(wsgi):
    server = wsgi("input_app:app")
    pieces = read_as(server, "read-n", 7)["pieces"]
    assert b"".join(pieces) == BODY and pieces[-1] == b""
    assert all(0 < len(p) <= 7 for p in pieces[:-1])
    assert read_as(server, "read-all")["pieces"] == [BODY, b""]
    assert read_as(server, "read-minus-one")["pieces"] == [BODY]
    assert read_as(server, "readline")["pieces"] == LINES + [b""]
    assert read_as(server, "readlines")["pieces"] == LINES
    assert read_as(server, "iter")["pieces"] == LINES
    # readline(n): at most n bytes, never past a newline
    pieces = read_as(server, "readline-n", 5)["pieces"]
    assert b"".join(pieces) == BODY and pieces[-1] == b""
    assert all(0 < len(p) <= 5 and b"\n" not in p[:-1] for p in pieces[:-1])
    assert pieces[:3] == [b"line ", b"one\n", b"line "]
    # an empty body reads as empty
    assert read_as(server, "read-all", body=b"")["pieces"] == [b"", b""]


@pytest.mark.parametrize("how,n", [("read-n", 10000), ("read-all", 0), ("readline-n", 300),
                                   ("readlines", 0), ("iter", 0)])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_input_large_body_read_as_it_arrives(wsgi, how, n, framing):
    """A body far larger than one socket read: the pieces still add up to it exactly."""
    import random
    rng = random.Random(11)
    lines = [b"%d %s\n" % (i, b"x" * rng.randrange(0, 1000)) for i in range(600)]
    body = b"".join(lines)  # about 300 KB
    server = wsgi("input_app:app")
    if framing == "chunked":
        wire = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 70001]), body[i:i + 70001])
                        for i in range(0, len(body), 70001)) + b"0\r\n\r\n"
        got = read_as(server, how, n, body=wire, headers=[("Transfer-Encoding", "chunked")])
    else:
        got = read_as(server, how, n, body=body)
    pieces = got["pieces"]
    assert b"".join(pieces) == body
    if how in ("readlines", "iter"):
        assert pieces == lines
    elif n:
        assert all(len(p) <= n for p in pieces)


def test_chunked_request_body_is_decoded_and_terminated(wsgi):
    server = wsgi("input_app:app")
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in [BODY[:5], BODY[5:6], BODY[6:]])
    got = read_as(server, "read-all", body=chunked + b"0\r\n\r\n",
                  headers=[("Transfer-Encoding", "chunked")])
    assert got["pieces"] == [BODY, b""]
    assert got["terminated"] is True
    assert got["content_length"] in (None, "")
    assert read_as(server, "readline", body=chunked + b"0\r\n\r\n",
                   headers=[("Transfer-Encoding", "chunked")])["pieces"] == LINES + [b""]


@pytest.mark.gunicorn_differs("its sync worker closes the connection after one answer; its "
                              "gthread worker leaves a pipelined request unanswered")
@pytest.mark.parametrize("how", ["read-all", "read-n", "readline", "none"])
def test_input_never_reads_past_the_body(wsgi, how):
    """The app reads (or not) its body; the request pipelined behind it is still intact."""
    server = wsgi("input_app:app")
    second = b"POST /read-all HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n" \
             b"Connection: close\r\n\r\nsecond"
    first = b"POST /%s?4 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (
        how.encode(), len(BODY), BODY)
    answers = parse_responses(server.exchange(first + second), ["POST"])
    assert [r.status for r in answers] == [200, 200], answers
    pieces = [p.encode("latin-1") for p in json.loads(answers[0].body)["pieces"]]
    assert b"".join(pieces) == (b"" if how == "none" else BODY)
    assert json.loads(answers[1].body)["pieces"] == ["second", ""]


@pytest.mark.gunicorn_differs("its sync worker closes the connection after one answer")
@pytest.mark.parametrize("how", ["none", "read-once"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_unread_large_body_is_skipped_before_the_next_request(wsgi, how, framing):
    """The app reads none or 10 bytes of a 200 KB body (more than the server reads ahead);
    the server skips the rest and answers the request pipelined behind it."""
    server = wsgi("input_app:app")
    body = bytes(range(256)) * 800
    if framing == "chunked":
        first = b"POST /%s?10 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" % (
            how.encode()) + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 30000]), body[i:i + 30000])
                                    for i in range(0, len(body), 30000)) + b"0\r\n\r\n"
    else:
        first = b"POST /%s?10 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (
            how.encode(), len(body), body)
    second = b"POST /read-all HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n" \
             b"Connection: close\r\n\r\nsecond"
    answers = parse_responses(server.exchange(first + second), ["POST"])
    assert [r.status for r in answers] == [200, 200], answers
    pieces = json.loads(answers[0].body)["pieces"]
    assert [p.encode("latin-1") for p in pieces] == ([] if how == "none" else [body[:10]])
    assert json.loads(answers[1].body)["pieces"] == ["second", ""]


@pytest.mark.hearth_only("Gunicorn has no body size limit")
def test_body_over_max_body_size_answers_413(wsgi):
    server = wsgi("input_app:app", hearth_args=["--max-body-size", "1k"])
    assert read_as(server, "read-all", body=b"x" * 1024)["pieces"] == [b"x" * 1024, b""]
    assert server.request("POST", "/read-all", body=b"x" * 1025).status == 413
    big = b"y" * 1500
    r = server.request("POST", "/read-all", body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big),
                       headers=[("Transfer-Encoding", "chunked")])
    assert r.status == 413
