"""Starts a thread at import that counts every 10 ms; answers "pid counter". The counter
advances between requests only if the worker releases the GIL while it waits for one."""
import os
import threading
import time

counter = 0


def count():
    global counter
    while True:
        time.sleep(0.01)
        counter += 1


threading.Thread(target=count, daemon=True).start()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d %d\n" % (os.getpid(), counter)]
