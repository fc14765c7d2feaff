"""Applications that break PEP 3333, one per path; the server must refuse what they produce:
a 500 when nothing was sent yet, an aborted connection after, and never a forged byte on the
wire. Not wrapped in wsgiref.validate, which would catch them before the server does."""
TEXT = [("Content-Type", "text/plain")]


def bad_start(status, headers):
    def wsgi(environ, start_response):
        start_response(status, headers)
        return [b"must never be sent\n"]
    return wsgi


def twice(environ, start_response):
    start_response("200 OK", TEXT)
    start_response("201 Created", TEXT)  # no exc_info: an error
    return [b"must never be sent\n"]


def no_start_response(environ, start_response):
    return [b"must never be sent\n"]


def str_item_first(environ, start_response):
    start_response("200 OK", TEXT)
    return ["a str, not bytes\n"]


def str_item_later(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"first bytes\n"
    yield "then a str\n"


def raise_before(environ, start_response):
    raise RuntimeError("probe failure before the headers")


def raise_after(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"first bytes\n"
    raise RuntimeError("probe failure after the headers")


ROUTES = {
    "/twice": twice,
    "/no-start-response": no_start_response,
    "/str-item-first": str_item_first,
    "/str-item-later": str_item_later,
    "/raise-before": raise_before,
    "/raise-after": raise_after,
    # status line and headers that would put bytes of the app's choosing on the wire
    "/status-crlf": bad_start("200 OK\r\nX-Injected: 1", TEXT),
    "/status-lf": bad_start("200 OK\nX-Injected: 1", TEXT),
    "/status-ctl": bad_start("200 O\x01K", TEXT),
    "/status-bytes": bad_start(b"200 OK", TEXT),
    "/status-not-a-code": bad_start("OK 200", TEXT),
    "/status-four-digits": bad_start("2000 OK", TEXT),
    "/value-crlf": bad_start("200 OK", TEXT + [("X-A", "a\r\nX-Injected: 1")]),
    "/value-lf": bad_start("200 OK", TEXT + [("X-A", "a\nX-Injected: 1")]),
    "/value-cr": bad_start("200 OK", TEXT + [("X-A", "a\rX-Injected: 1")]),
    "/value-nul": bad_start("200 OK", TEXT + [("X-A", "a\x00b")]),
    "/value-ctl": bad_start("200 OK", TEXT + [("X-A", "a\x1bb")]),
    "/value-del": bad_start("200 OK", TEXT + [("X-A", "a\x7fb")]),
    "/name-crlf": bad_start("200 OK", TEXT + [("X-A\r\nX-Injected", "1")]),
    "/name-colon": bad_start("200 OK", TEXT + [("X-A: 1\r\nX-Injected", "1")]),
    "/name-space": bad_start("200 OK", TEXT + [("X A", "1")]),
    "/value-not-latin1": bad_start("200 OK", TEXT + [("X-A", "\u20ac")]),
    "/value-int": bad_start("200 OK", TEXT + [("X-A", 1)]),
    "/value-bytes": bad_start("200 OK", TEXT + [("X-A", b"1")]),
    "/name-bytes": bad_start("200 OK", TEXT + [(b"X-A", "1")]),
}


def app(environ, start_response):
    return ROUTES[environ["PATH_INFO"]](environ, start_response)
