"""Shared fixtures for end-to-end tests: where the binaries are, free ports, and processes
that are always stopped when a test ends."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

BUILD = os.environ.get("HEARTH_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("HEARTH_SOURCE", os.path.join(os.path.dirname(__file__), "../.."))

# One helper package for tests and benchmarks (bench/hearthbench): ports come from there.
sys.path.insert(0, os.path.join(SOURCE, "bench"))
from hearthbench.procs import free_port  # noqa: E402,F401


def binary(*parts):
    """Path of a built file, e.g. binary('edge', 'edge')."""
    return os.path.join(BUILD, *parts)


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
