"""The peer of examples/hello for the app-path benchmark: the same body from Flask."""
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, world!\n", 200, {"Content-Type": "text/plain"}
