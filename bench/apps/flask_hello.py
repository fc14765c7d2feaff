"""Flask's "hello" for the app benchmarks (rows 5, 6, 10a and 11): the body and content type of
examples/hello, so every server that runs it, hearth's WSGI bridge included, answers the same."""
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, world!\n", 200, {"Content-Type": "text/plain"}
