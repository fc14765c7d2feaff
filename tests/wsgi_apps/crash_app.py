"""/crash dereferences NULL in C (ctypes.string_at(0)): the worker dies of SIGSEGV;
/ answers the worker's pid."""
import ctypes
import os


def app(environ, start_response):
    if environ["PATH_INFO"] == "/crash":
        ctypes.string_at(0)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d\n" % os.getpid()]
