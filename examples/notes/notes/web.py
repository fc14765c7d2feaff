"""What every response of the site shares: security headers, the same-origin check on
posts, the favicon and the error pages (HTML, or JSON under /api/)."""
from urllib.parse import urlsplit

from flask import abort, current_app, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

# Only our own files: no inline script or style, no framing, forms post only to us.
CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def security_headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    # only on HTTPS: over plain HTTP the header would be ignored, and is a lie
    if request.scheme == "https":
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def same_origin_only():
    """There are no sessions to steal, but another site must not make a visitor's browser add
    or delete notes: browsers send Origin with every POST and DELETE, so refuse a foreign one
    (clients that send none, curl say, are not browsers acting for someone else)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        abort(403, "cross-origin request refused")


def error_page(error):
    # keep what the error itself says in headers (Allow on a 405), not its HTML
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    if request.path.startswith("/api/"):
        return {"error": error.description}, error.code, headers
    return render_template("error.html", error=error), error.code, headers


def server_error(error):
    # the original exception has been logged by Flask already; show no detail of it
    return error_page(InternalServerError())


def favicon():
    return current_app.send_static_file("favicon.ico")


def init_app(app):
    app.before_request(same_origin_only)
    app.after_request(security_headers)
    app.register_error_handler(HTTPException, error_page)
    app.register_error_handler(InternalServerError, server_error)
    app.add_url_rule("/favicon.ico", "favicon", favicon)
