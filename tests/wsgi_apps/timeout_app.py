"""/hang never returns (stuck_forever); / answers the worker's pid."""
import os
import time


def stuck_forever():
    while True:
        time.sleep(0.05)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        stuck_forever()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d\n" % os.getpid()]
