"""wsgi.file_wrapper: /real?PATH serves a real file (which has a fileno: the server may send
it with sendfile and then never calls read()); /blocks?PATH serves a file-like object without
fileno, which the server must read in blocks. Each object appends its read() sizes and its
close() to PATH.record. Not wrapped in wsgiref.validate: its iterator wrapper would hide the
file wrapper from the server."""
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
    path = environ["QUERY_STRING"]
    kind = {"/real": RecordingFile, "/blocks": NoFileno}[environ["PATH_INFO"]]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](kind(path), 8192)

