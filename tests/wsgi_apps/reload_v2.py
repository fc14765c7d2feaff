"""Version 2 of the app a reload test deploys, a different size than version 1 (a cached .pyc
is checked against the source's mtime and size)."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"version 2\n"]
