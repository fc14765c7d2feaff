"""Reads wsgi.input the way the path says and answers the pieces it got, as JSON (each piece
latin-1 decoded), so the test sees every call's result.

Not wrapped in wsgiref.validate: its InputWrapper refuses read() with no size, which the
issue requires the server to support."""
import json


def until_empty(call):
    """call() until it returns b"", that last b"" included."""
    pieces = [call()]
    while pieces[-1]:
        pieces.append(call())
    return pieces


def read_pieces(stream, how, n):
    if how == "read-n":
        return until_empty(lambda: stream.read(n))
    if how == "read-all":
        return [stream.read(), stream.read()]
    if how == "read-minus-one":
        return [stream.read(-1)]
    if how == "readline":
        return until_empty(stream.readline)
    if how == "readline-n":
        return until_empty(lambda: stream.readline(n))
    if how == "readlines":
        return stream.readlines()
    if how == "iter":
        return list(stream)
    if how == "none":  # leaves the body unread: the server must still find the next request
        return []
    if how == "read-once":  # reads a little of it, leaves the rest
        return [stream.read(n)]
    raise ValueError(how)


def app(environ, start_response):
    how = environ["PATH_INFO"].strip("/")
    n = int(environ.get("QUERY_STRING") or 0)
    pieces = read_pieces(environ["wsgi.input"], how, n)
    assert all(type(p) is bytes for p in pieces), [type(p) for p in pieces]
    body = json.dumps({
        "pieces": [p.decode("latin-1") for p in pieces],
        "terminated": environ.get("wsgi.input_terminated"),
        "content_length": environ.get("CONTENT_LENGTH"),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
