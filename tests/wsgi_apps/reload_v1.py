"""Version 1 of the app a reload test deploys (as reload_app.py) and then replaces. /slow?GO
sends a first line, then waits (10 s at most) for the file GO before its last one."""
import os
import time


def slow(go):
    yield b"v1 started\n"
    for _ in range(1000):
        if os.path.exists(go):
            break
        time.sleep(0.01)
    yield b"v1 finished\n"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/slow":
        return slow(environ["QUERY_STRING"])
    return [b"v1\n"]
