"""Imports venv_probe, which only the --virtualenv's site-packages holds; answers its VALUE."""
import venv_probe


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [venv_probe.VALUE.encode() + b"\n"]
