"""wsgi.file_wrapper: /real?PATH serves a real file (which has a fileno: the server may send
it with sendfile and then never calls read()); /blocks?PATH serves a file-like object without
fileno, which the server must read in blocks; /real-offset and /real-cl are below. Each
object appends its read() sizes and its close() to PATH.record. Not wrapped in
wsgiref.validate: its iterator wrapper would hide the file wrapper from the server."""
import io


class RecordingFile(io.FileIO):
    def __init__(self, path):
        super().__init__(path, "r")
        self.record = path + ".record"

    def read(self, n=-1):
        with open(self.record, "a") as f:
            f.write(f"read {n}\n")
        return super().read(n)

    def close(self):
        if not self.closed:
            with open(self.record, "a") as f:
                f.write("close\n")
        super().close()


class NoFileno:
    """Only read() and close(): what a BytesIO-like object offers."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = io.BytesIO(f.read())
        self.record = path + ".record"

    def read(self, n=-1):
        with open(self.record, "a") as f:
            f.write(f"read {n}\n")
        return self.data.read(n)

    def close(self):
        with open(self.record, "a") as f:
            f.write("close\n")


def app(environ, start_response):
    """/real, /blocks; /real-offset starts the file at byte 1000 (transmission begins at the
    current position), /real-cl declares a Content-Length of 100 (no more may be sent)."""
    path, route = environ["QUERY_STRING"], environ["PATH_INFO"]
    f = (NoFileno if route == "/blocks" else RecordingFile)(path)
    headers = [("Content-Type", "application/octet-stream")]
    if route == "/real-offset":
        f.seek(1000)
    if route == "/real-cl":
        headers.append(("Content-Length", "100"))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 8192)
