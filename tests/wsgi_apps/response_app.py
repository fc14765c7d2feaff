"""Response framing: streaming as produced, Content-Length kept to, bodies on HEAD, 204, 304.
/stream waits, between its two chunks, for the file named in the query string to exist (the
test creates it once it has the first chunk)."""
import os
import time
from wsgiref.validate import validator

TEXT = [("Content-Type", "text/plain")]


def stream(environ, start_response):
    go = environ["QUERY_STRING"]
    start_response("200 OK", TEXT)
    yield b"first chunk\n"
    deadline = time.monotonic() + 10
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            yield b"gave up waiting\n"
            return
        time.sleep(0.01)
    yield b"last chunk\n"


def pieces(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"a", b"", b"bc", b"def\n"]  # an empty item must not end a chunked body


def head_body(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "5")])
    return [b"body\n"]  # for HEAD too: the server must not send it


VALID = validator(lambda e, s: {"/stream": stream, "/pieces": pieces,
                                "/head-body": head_body}[e["PATH_INFO"]](e, s))


def status_with_body(status):
    def wsgi(environ, start_response):
        start_response(status, [])
        return [b"must never be sent\n"]
    return wsgi


def content_length(declared, body):
    def wsgi(environ, start_response):
        start_response("200 OK", TEXT + [("Content-Length", str(declared))])
        return [body[:4], body[4:]]
    return wsgi


def hop_by_hop(environ, start_response):
    # framing is the server's: an app that claims chunking or keep-alive must not get either
    start_response("200 OK", TEXT + [("Transfer-Encoding", "chunked"), ("Connection", "close"),
                                     ("Keep-Alive", "timeout=99")])
    return [b"0\r\n\r\n", b"plain body\n"]


INVALID = {
    "/hop-by-hop": hop_by_hop,
    "/204": status_with_body("204 No Content"),
    "/304": status_with_body("304 Not Modified"),
    "/cl-more": content_length(5, b"0123456789"),  # more than declared: 5 sent, no more
    "/cl-less": content_length(10, b"01234"),  # less than declared: the connection aborted
}


def app(environ, start_response):
    return INVALID.get(environ["PATH_INFO"], VALID)(environ, start_response)
