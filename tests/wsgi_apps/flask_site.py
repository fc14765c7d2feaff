"""The Flask application of tests/e2e/test_wsgi_differential.py, served by Gunicorn and by
hearth's appserver at once: every route answers from what the request carried, so two
servers that hand Flask the same request must give the same answer."""
import hashlib

from flask import (Flask, Response, abort, jsonify, redirect, request, stream_with_context,
                   url_for)

app = Flask(__name__)


def digest(data):
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@app.route("/")
def index():
    return "<!doctype html><title>diff</title><p>hello</p>\n"


@app.route("/echo", methods=["GET", "POST", "PUT", "DELETE"])
def echo():
    """What the request looked like to Flask."""
    return jsonify(method=request.method, path=request.path, full_path=request.full_path,
                   url=request.url, args=request.args.to_dict(flat=False),
                   query=request.query_string.decode("latin-1"),
                   remote_addr=request.remote_addr, scheme=request.scheme,
                   content_type=request.content_type, content_length=request.content_length,
                   accept=request.headers.get("Accept"), x=request.headers.get("X-Probe"))


@app.route("/json", methods=["POST"])
def json_in_out():
    data = request.get_json()  # 400 when it is not JSON
    return jsonify(received=data, kind=type(data).__name__), 201


@app.route("/form", methods=["POST"])
def form():
    return jsonify(form=request.form.to_dict(flat=False), args=request.args.to_dict(flat=False))


@app.route("/upload", methods=["POST"])
def upload():
    files = {name: dict(filename=f.filename, content_type=f.content_type, **digest(f.read()))
             for name, f in request.files.items()}
    return jsonify(files=files, form=request.form.to_dict(flat=False))


@app.route("/body", methods=["POST", "PUT"])
def body():
    return jsonify(digest(request.get_data()), chunked="chunked" in request.headers.get(
        "Transfer-Encoding", ""))


@app.route("/cookies/set")
def set_cookies():
    r = jsonify(set=sorted(request.args))
    for name, value in request.args.items():
        r.set_cookie(name, value, httponly=True, samesite="Lax")
    return r


@app.route("/cookies")
def read_cookies():
    return jsonify(request.cookies.to_dict())


@app.route("/redirect/<int:code>")
def redirect_to(code):
    if request.args.get("external"):
        return redirect(url_for("echo", came="from-redirect", _external=True), code=code)
    return redirect("/echo?came=from-redirect", code=code)


@app.route("/abort/<int:code>")
def abort_with(code):
    abort(code)


@app.route("/boom")
def boom():
    raise RuntimeError("unhandled, on purpose")


@app.route("/u/<path:name>")
def unicode_path(name):
    return jsonify(name=name, path=request.path, path_info=request.environ["PATH_INFO"])


@app.route("/stream")
def stream():
    n = request.args.get("n", 5, type=int)

    def lines():
        for i in range(n):
            yield f"line {i} of {n}\n" + "x" * (i * 37)
    return Response(stream_with_context(lines()), mimetype="text/plain")
