"""WSGI applications served by hearth's appserver or, to check the tests themselves, by
Gunicorn (HEARTH_WSGI_SERVER=gunicorn); and the example Flask site (examples/notes) under
either."""
import os
import re
import socket

from . import PYTHON, SOURCE, binary
from .clients import parse_responses, read_until_close
from .ports import free_port, port_open
from .procs import wait_until

# The example Flask site (examples/notes), served by each WSGI server the tests know: Debian's
# Gunicorn, and hearth's appserver.
NOTES_APP_DIR = os.path.join(SOURCE, "examples", "notes")


def notes_under_gunicorn(port, db, tls=()):
    args = ["/usr/bin/python3", "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
            "--chdir", NOTES_APP_DIR, *tls, "notes.wsgi:app"]
    return args, {"NOTES_DB": db}


def notes_under_appserver(port, db, tls=()):
    assert not tls, "the appserver speaks plain HTTP: TLS is the edge's job"
    args = [binary("appserver", "appserver"), "-w", "2", "-b", f"127.0.0.1:{port}",
            "--chdir", NOTES_APP_DIR, "--env", f"NOTES_DB={db}", "notes.wsgi:app"]
    return args, {}


# The sanitizer run is about our code: the peers' runs would repeat the normal run's exactly.
SANITIZED = os.environ.get("HEARTH_SANITIZED") == "1"


def start_notes(procs, command, db_path, tls=()):
    """Serves the notes site with command (one of NOTES_SERVERS) on a free loopback port and
    returns the port once it accepts connections; tls: extra Gunicorn flags (--certfile ...)."""
    port = free_port()
    args, env = command(port, str(db_path), tls)
    procs.start_serving(args, [port], name="notes", env=env)
    return port


WSGI_APPS = os.path.join(SOURCE, "tests", "wsgi_apps")
WSGI_SERVER = os.environ.get("HEARTH_WSGI_SERVER", "hearth")


class WsgiServer:
    """A WSGI application served on host:port (127.0.0.1 unless asked) and a Unix socket."""

    def __init__(self, procs, proc, kind, host, port, sock):
        self.procs, self.proc, self.kind = procs, proc, kind
        self.host, self.port, self.sock = host, port, sock

    def log(self):
        return self.procs.log(self.proc)

    def wait_log(self, pattern, timeout=10):
        wait_until(lambda: re.search(pattern, self.log(), re.M), timeout=timeout, what=pattern)

    def connect(self, timeout=10, source=None, unix=False):
        if unix:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(timeout)
            s.connect(self.sock)
            return s
        s = socket.create_connection((self.host, self.port), timeout=timeout,
                                     source_address=(source, 0) if source else None)
        return s

    def exchange(self, data, timeout=10, **kw):
        """Send raw bytes, return everything the server sent until it closed."""
        s = self.connect(timeout=timeout, **kw)
        s.sendall(data)
        return read_until_close(s)

    def request(self, method, target, headers=(), body=None, version="HTTP/1.1", **kw):
        """One request on a fresh connection, Connection: close; the parsed Response."""
        head = f"{method} {target} {version}\r\nHost: wsgi.test\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                        for k, _ in headers):
            head += f"Content-Length: {len(body)}\r\n"
        answer = self.exchange(head.encode("latin-1") + b"\r\n" + (body or b""), **kw)
        responses = parse_responses(answer, [method])
        assert len(responses) == 1, answer[:500]
        return responses[0]

    def get(self, target, **kw):
        return self.request("GET", target, **kw)


def start_wsgi(procs, tmp_path, app, workers=1, chdir=WSGI_APPS, timeout=None, mount=None,
               hearth_args=(), gunicorn_args=(), env=None, wait=True, kind=None,
               host="127.0.0.1"):
    """Serve app ('module:callable') from chdir with `workers` workers, on host and a fresh
    TCP port and on tmp_path/wsgi-KIND-PORT.sock, by hearth's appserver or by Gunicorn (kind,
    default from HEARTH_WSGI_SERVER). Waits until it serves unless wait is False."""
    import resource
    kind = kind or WSGI_SERVER
    port = free_port()
    sock = str(tmp_path / f"wsgi-{kind}-{port}.sock")
    common = ["-w", str(workers), "-b", f"{host}:{port}", "-b", "unix:" + sock,
              "--chdir", str(chdir)]
    if timeout is not None:
        common += ["-t", str(timeout)]
    env = dict(env or {})
    if kind == "hearth":
        argv = [binary("appserver", "appserver"), *common, *hearth_args]
        if mount:
            argv += ["--mount", mount]
    elif kind == "gunicorn":
        argv = [PYTHON, "-m", "gunicorn", *common, "--graceful-timeout", "2", *gunicorn_args]
        if mount:
            env["SCRIPT_NAME"] = mount  # Gunicorn's way to set SCRIPT_NAME
    else:
        raise ValueError(f"HEARTH_WSGI_SERVER={kind}: hearth or gunicorn")
    # crash tests kill workers with SIGSEGV: no core files on machines that keep them
    p = procs.start([*argv, app], name=f"{kind}-{port}", env=env,
                    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    server = WsgiServer(procs, p, kind, host, port, sock)
    if wait:
        ready = "serving (" if kind == "hearth" else "Booting worker"
        wait_until(lambda: p.poll() is not None or (ready in server.log() and
                                                    port_open(port, host)),
                   timeout=20, what=f"{kind} serving {app}")
        assert p.poll() is None, server.log()
    return server
