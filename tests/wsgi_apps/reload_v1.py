"""Version 1 of the app a reload test deploys (as reload_app.py) and then replaces."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"v1\n"]
