"""Writes the query string to wsgi.errors (write, writelines, flush): it must reach the
server's error log."""
from wsgiref.validate import validator


def errors(environ, start_response):
    marker = environ["QUERY_STRING"]
    environ["wsgi.errors"].write(f"probe write {marker}\n")
    environ["wsgi.errors"].writelines([f"probe writelines {marker}\n"])
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"logged\n"]


app = validator(errors)
