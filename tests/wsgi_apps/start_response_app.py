"""Valid uses of start_response: exc_info replacing a response not yet sent, exc_info after
the headers went out (the server must re-raise and abort), and the write() callable."""
import sys
from wsgiref.validate import validator

TEXT = [("Content-Type", "text/plain")]


def replace_before(environ, start_response):
    start_response("200 OK", TEXT + [("X-First", "1")])
    try:
        raise ValueError("changed my mind")
    except ValueError:
        start_response("503 Service Unavailable", TEXT + [("X-Second", "1")], sys.exc_info())
    return [b"replaced\n"]


def exc_after(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"partial\n"
    try:
        raise ValueError("too late to change")
    except ValueError:
        # headers are out: this must raise the exception again, and the server abort
        start_response("500 Internal Server Error", TEXT, sys.exc_info())
    yield b"must never be sent\n"


def replace_after_empty(environ, start_response):
    start_response("200 OK", TEXT + [("X-First", "1")])
    yield b""  # nothing to send yet: the headers must still be held back (PEP 3333)
    try:
        raise ValueError("changed my mind after an empty item")
    except ValueError:
        start_response("503 Service Unavailable", TEXT + [("X-Second", "1")], sys.exc_info())
    yield b"replaced\n"


def write_callable(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"one,")
    write(b"two,")
    return [b"three\n"]


def latin1_header(environ, start_response):
    start_response("200 OK", TEXT + [("X-Latin-1", "caf\u00e9")])  # PEP 3333: latin-1 str
    return [b"ok\n"]


ROUTES = {"/latin-1-header": latin1_header, "/replace-before": replace_before, "/replace-after-empty": replace_after_empty,
          "/exc-after": exc_after, "/write": write_callable}


def dispatch(environ, start_response):
    return ROUTES[environ["PATH_INFO"]](environ, start_response)


app = validator(dispatch)
