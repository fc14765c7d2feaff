"""An iterable whose close() appends "closed <path>" to the file named in the query string:
the server must call it on every path (complete, exception, client gone, bad item)."""
import time

TEXT = [("Content-Type", "text/plain")]


class Body:
    def __init__(self, record, path, items):
        self.record, self.path, self.items = record, path, items

    def __iter__(self):
        return self.items

    def close(self):
        with open(self.record, "a") as f:
            f.write(f"closed {self.path}\n")


def complete():
    yield b"all of it\n"


def raises():
    yield b"first\n"
    raise RuntimeError("probe failure mid-body")


def forever():
    # the client goes away after the first chunk; the server finds out on a write
    while True:
        yield b"x" * 16384
        time.sleep(0.005)


def str_item():
    yield b"first\n"
    yield "a str\n"


ITEMS = {"/complete": complete, "/raise": raises, "/forever": forever, "/str": str_item}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    start_response("200 OK", TEXT)
    return Body(environ["QUERY_STRING"], path, ITEMS[path]())
