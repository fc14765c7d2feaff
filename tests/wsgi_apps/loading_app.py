"""Loaded as loading_app:create_app() (a factory), with probe_lib importable only from the
--pythonpath folder the test makes and PROBE_ENV set only by --env: answers what it saw at
import time and at request time."""
import os

PROBE_ENV_AT_IMPORT = os.environ.get("PROBE_ENV")


def create_app():
    import probe_lib  # only on --pythonpath

    def app(environ, start_response):
        body = f"{probe_lib.VALUE} {PROBE_ENV_AT_IMPORT} {os.environ.get('PROBE_ENV')}\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]
    return app
