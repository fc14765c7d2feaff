"""RFC 9113 8.1.1, 8.2 and 8.3: malformed requests (field names and values, connection-
specific fields, pseudo-header fields, Content-Length against the DATA frames). Each is a
stream error PROTOCOL_ERROR, or answered 4xx first (8.1.1 allows that); none reaches a
handler."""
import pytest

from h2peers import VALUE_WHITESPACE, breaks
from h2wire import block, data, headers, literal, request_fields

GET = request_fields()


def fields_with(*extra):
    return GET + list(extra)


def send_fields(conn, fields, end_stream=True):
    conn.send(headers(1, block(fields), end_stream=end_stream))


def answered(conn, fields):
    send_fields(conn, fields)
    status, _, _ = conn.response(1)
    return status


# --- 8.2.1 field validity ---------------------------------------------------------------------

WHITESPACE = breaks(nginx=VALUE_WHITESPACE, caddy=VALUE_WHITESPACE)
INVALID_FIELDS = {
    "uppercase name": ("X-Upper", "1"),
    "uppercase in a known name": ("Accept", "*/*"),
    "space in a name": ("x y", "1"),
    "colon inside a name": ("x:y", "1"),
    "DEL in a name": ("x\x7fy", "1"),
    "NUL in a name": ("x\x00y", "1"),
    "CR LF in a value": ("x-v", "a\r\nx-injected: 1"),
    "LF in a value": ("x-v", "a\nb"),
    "CR in a value": ("x-v", "a\rb"),
    "NUL in a value": ("x-v", "a\x00b"),
    "value starting with a space": pytest.param(("x-v", " a"), marks=WHITESPACE),
    "value ending with a tab": pytest.param(("x-v", "a\t"), marks=WHITESPACE),
}


@pytest.mark.parametrize("field", INVALID_FIELDS.values(), ids=INVALID_FIELDS.keys())
def test_invalid_field(conn, field):
    """8.2.1: names are lowercase tokens without a colon; values carry no NUL, CR or LF and
    no whitespace at either end."""
    send_fields(conn, fields_with(field))
    conn.rejected(1)


CONNECTION_SPECIFIC = {
    "connection": ("connection", "keep-alive"),
    "connection close": ("connection", "close"),
    "keep-alive": ("keep-alive", "timeout=5"),
    "proxy-connection": ("proxy-connection", "keep-alive"),
    "transfer-encoding": ("transfer-encoding", "chunked"),
    "upgrade": ("upgrade", "websocket"),
}


@breaks(nginx="drops connection-specific fields and serves the request")
@pytest.mark.parametrize("field", CONNECTION_SPECIFIC.values(), ids=CONNECTION_SPECIFIC.keys())
def test_connection_specific_field(conn, field):
    """8.2.2: connection-specific fields make a request malformed."""
    send_fields(conn, fields_with(field))
    conn.rejected(1)


@breaks(nginx="serves a request whose TE is not \"trailers\"")
@pytest.mark.parametrize("value", ["gzip", "trailers, deflate", "chunked"])
def test_te_other_than_trailers(conn, value):
    """8.2.2: TE may only say "trailers"."""
    send_fields(conn, fields_with(("te", value)))
    conn.rejected(1)


def test_te_trailers_is_accepted(conn):
    assert answered(conn, fields_with(("te", "trailers"))) == 200


def test_split_cookie_fields_are_accepted(conn):
    """8.2.3: a cookie may come as several fields."""
    assert answered(conn, fields_with(("cookie", "a=1"), ("cookie", "b=2"))) == 200


# --- 8.3 pseudo-header fields -----------------------------------------------------------------

def without(name):
    return [f for f in GET if f[0] != name]


def duplicated(name):
    return GET + [f for f in GET if f[0] == name]


PSEUDO_ERRORS = {
    "unknown pseudo-header": fields_with((":foo", "bar")),
    "response pseudo-header": fields_with((":status", "200")),
    "pseudo-header after a regular field": pytest.param(
        GET[:2] + [("x-first", "1")] + GET[2:],
        marks=breaks(nginx="takes a pseudo-header after a regular field")),
    "no :method": without(":method"),
    "no :scheme": without(":scheme"),
    "no :path": without(":path"),
    "two :method": duplicated(":method"),
    "two :scheme": duplicated(":scheme"),
    "two :path": duplicated(":path"),
    "two :authority": duplicated(":authority"),
    "empty :path": [(n, "" if n == ":path" else v) for n, v in GET],
    "CONNECT with :path and :scheme": [(n, "CONNECT" if n == ":method" else v) for n, v in GET],
}


@pytest.mark.parametrize("fields", PSEUDO_ERRORS.values(), ids=PSEUDO_ERRORS.keys())
def test_malformed_pseudo_headers(conn, fields):
    """8.3: only the defined request pseudo-headers, each once, all before the regular
    fields; :method, :scheme and a non-empty :path present (8.5: not for CONNECT)."""
    send_fields(conn, fields)
    conn.rejected(1)


def test_pseudo_header_in_trailers(conn):
    """8.1: trailers carry no pseudo-header fields."""
    send_fields(conn, request_fields("POST", "/echo"), end_stream=False)
    conn.send(data(1, b"body"), headers(1, literal(":path", "/trailer")))
    conn.rejected(1)


def test_host_instead_of_authority(conn):
    """8.3.1: :authority may be left out when Host carries the authority."""
    assert answered(conn, without(":authority") + [("host", "localhost")]) == 200


# --- 8.1.1 Content-Length against DATA --------------------------------------------------------

SHORT_BODY = breaks(caddy="hands the short body on to the proxy: 502, not a stream error")
LENGTH_MISMATCHES = {
    "more declared than one frame": pytest.param(
        "10", [data(1, b"12345", end_stream=True)], marks=SHORT_BODY),
    "less declared than one frame": ("5", [data(1, b"1234567890", end_stream=True)]),
    "more declared than two frames": pytest.param(
        "10", [data(1, b"1234"), data(1, b"5678", end_stream=True)], marks=SHORT_BODY),
    "less declared than two frames": ("5", [data(1, b"1234"), data(1, b"5678",
                                                                  end_stream=True)]),
    "declared but no DATA": pytest.param(
        "5", [], marks=breaks(caddy="serves content-length 5 with no body at all")),
    "zero declared, one octet sent": ("0", [data(1, b"x", end_stream=True)]),
}


@pytest.mark.parametrize("length,frames", LENGTH_MISMATCHES.values(),
                         ids=LENGTH_MISMATCHES.keys())
def test_content_length_mismatch(conn, length, frames):
    """8.1.1: a content-length unequal to the sum of the DATA payloads makes the request
    malformed."""
    fields = request_fields("POST", "/echo", extra=[("content-length", length)])
    send_fields(conn, fields, end_stream=not frames)
    conn.send(*frames)
    conn.rejected(1)


def test_content_length_matching_the_data(conn):
    fields = request_fields("POST", "/echo", extra=[("content-length", "8")])
    send_fields(conn, fields, end_stream=False)
    conn.send(data(1, b"1234"), data(1, b"5678", end_stream=True))
    status, _, body = conn.response(1)
    assert (status, body) == (200, b"12345678")
