"""Answers the request's environ as JSON: str, bool, int and tuple values as they are, the
other objects as the names of the methods they have."""
import json
from wsgiref.validate import validator


def describe(value):
    if isinstance(value, (str, bool, int, tuple)):
        return value
    return {"methods": sorted(m for m in ("read", "readline", "readlines", "__iter__", "write",
                                          "writelines", "flush") if hasattr(value, m))}


def environ_json(environ, start_response):
    body = json.dumps({k: describe(v) for k, v in environ.items()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


app = validator(environ_json)
