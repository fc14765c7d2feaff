"""Shared fixtures for end-to-end tests: where the binaries are, free ports, and processes
that are always stopped when a test ends."""
import os
import signal
import socket
import subprocess
import time

import pytest

BUILD = os.environ.get("HEARTH_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("HEARTH_SOURCE", os.path.join(os.path.dirname(__file__), "../.."))


def binary(*parts):
    """Path of a built file, e.g. binary('edge', 'edge')."""
    return os.path.join(BUILD, *parts)


_ports_given = set()


def free_port():
    """A port nothing listens on now, never the same one twice in a test run (the kernel may
    hand a just-released port out again, and two servers of one test would then collide)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def unix_open(path):
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.2)
            s.connect(path)
            return True
    except OSError:
        return False


def read_until_close(sock, stop=None):
    """Everything a server sends on sock until it closes, times out or resets; with stop, also
    return as soon as the bytes read so far contain it. Closes sock."""
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
            if stop is not None and stop in out:
                break
    except (socket.timeout, ConnectionResetError):
        pass
    sock.close()
    return out


class Processes:
    """Starts processes with their output in files under tmp_path; stops them all at teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs = []

    def start(self, args, name=None, env=None, **kw):
        name = name or os.path.basename(args[0])
        log = open(self.tmp_path / f"{name}.log", "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, **kw)
        p.log_path = self.tmp_path / f"{name}.log"
        self.procs.append(p)
        return p

    def start_serving(self, args, ports, name=None, env=None, timeout=20):
        """start(), then wait until the process listens on every one of ports on 127.0.0.1;
        its exit before that fails the test with its log."""
        p = self.start(args, name=name, env=env)
        wait_until(lambda: p.poll() is not None or all(port_open(x) for x in ports),
                   timeout=timeout, what=f"{name or args[0]} to listen")
        assert p.poll() is None, self.log(p)
        return p

    def log(self, p):
        with open(p.log_path, "r", errors="replace") as f:
            return f.read()

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def procs(tmp_path):
    ps = Processes(tmp_path)
    yield ps
    ps.stop_all()


def make_test_pki(d, *sans):
    """A throwaway CA (ca.pem, ca.key) and a certificate it signed for sans ("DNS:localhost",
    "IP:127.0.0.1"...: cert.pem, key.pem), all in folder d, which is returned."""
    def openssl(*args):
        subprocess.run(["openssl", *map(str, args)], capture_output=True, check=True)

    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "2",
            "-subj", "/CN=test CA")
    openssl("req", *ec, "-keyout", d / "key.pem", "-out", d / "csr.pem", "-subj", "/CN=test")
    ext = d / "san.ext"
    ext.write_text(f"subjectAltName={','.join(sans)}\n")
    openssl("x509", "-req", "-in", d / "csr.pem", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
            "-CAcreateserial", "-out", d / "cert.pem", "-days", "2", "-extfile", ext)
    return d

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

NOTES_SERVERS = [
    pytest.param(notes_under_gunicorn, id="gunicorn", marks=pytest.mark.skipif(
        SANITIZED, reason="a peer: checked in the normal run")),
    pytest.param(notes_under_appserver, id="appserver"),
]


def start_notes(procs, command, db_path, tls=()):
    """Serves the notes site with command (one of NOTES_SERVERS) on a free loopback port and
    returns the port once it accepts connections; tls: extra Gunicorn flags (--certfile ...)."""
    port = free_port()
    args, env = command(port, str(db_path), tls)
    procs.start_serving(args, [port], name="notes", env=env)
    return port


@pytest.fixture(params=NOTES_SERVERS)
def notes_server(request, procs):
    """start(db_path) serves the notes site under each server in turn; returns the port."""
    return lambda db_path: start_notes(procs, request.param, db_path)
