"""Processes: started with their output in a log file, waited for, stopped with a timeout (a
SIGTERM, then a SIGKILL), pinned to a core for the benchmarks, and their children, memory and
open files as /proc tells them.

The benchmarks run servers on SERVER_CPU and every load generator on CLIENT_CPU (taskset), so a
server never competes for a core with the client that measures it."""
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time

SERVER_CPU = os.environ.get("SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("CLIENT_CPU", "1")


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def client_argv(argv):
    """A load generator's command line, pinned to the client core."""
    return ["taskset", "-c", CLIENT_CPU] + argv


class Server(subprocess.Popen):
    """One process, its output (stdout and stderr) appended to WORKDIR/NAME.log. cpu: pinned to
    that core; session: in a session of its own, so that stop() ends its whole process group
    (a master and its workers)."""

    def __init__(self, name, argv, workdir, env=None, cpu=None, session=False, **kw):
        self.name = name
        self.session = session
        self.log_path = os.path.join(workdir, f"{name}.log")
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy
            super().__init__(argv, stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, **(env or {})), start_new_session=session, **kw)

    def alive(self):
        return self.poll() is None

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def log_tail(self, n=20):
        return "".join(self.log().splitlines(keepends=True)[-n:])

    def kill_tree(self, sig):
        """sig to the process, or in a session of its own to its whole process group."""
        try:
            if self.session:
                os.killpg(self.pid, sig)
            else:
                self.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout=10):
        stop_all([self], timeout)


def stop_all(servers, timeout=5):
    """SIGTERM to every server still running, then SIGKILL to those not gone within timeout
    (one deadline for all: they stop side by side)."""
    for s in servers:
        if s.poll() is None:
            s.kill_tree(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for s in servers:
        try:
            s.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.kill_tree(signal.SIGKILL)
            s.wait()


class Processes:
    """Servers started with their logs in workdir (a test's tmp_path), all stopped together by
    stop_all(); cpu and session as for Server."""

    def __init__(self, workdir, cpu=None, session=False):
        self.workdir = workdir
        self.cpu, self.session = cpu, session
        self.procs = []

    def start(self, args, name=None, env=None, **kw):
        p = Server(name or os.path.basename(args[0]), args, self.workdir, env=env,
                   cpu=self.cpu, session=self.session, **kw)
        self.procs.append(p)
        return p

    def start_serving(self, args, ports, name=None, env=None, timeout=20):
        """start(), then wait until the process listens on every one of ports on 127.0.0.1;
        its exit before that fails with its log."""
        from .ports import port_open
        p = self.start(args, name=name, env=env)
        wait_until(lambda: p.poll() is not None or all(port_open(x) for x in ports),
                   timeout=timeout, what=f"{name or args[0]} to listen")
        assert p.poll() is None, p.log()
        return p

    def log(self, p):
        return p.log()

    def stop_all(self, timeout=5):
        stop_all(self.procs, timeout)


MAX_CHECK_RESPONSE = 4 << 20  # the readiness checks fetch small pages; stop reading beyond


def http_get(url_host, port, path="/", tls=False, unix=None, timeout=2.0):
    """One GET with a fresh connection; returns (status, body) or raises OSError."""
    if unix:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(unix)
    else:
        sock = socket.create_connection((url_host, port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    with sock:
        # the Host wrk and h2load send: the address, as in the URL
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while len(data) < MAX_CHECK_RESPONSE:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def encoded_body(host, port, path, accept, timeout=5.0):
    """One GET with Accept-Encoding: accept; returns (its Content-Encoding or None, the length
    of its body as sent, before any decoding)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": accept, "Host": host})
        r = conn.getresponse()
        return r.getheader("Content-Encoding"), len(r.read())
    finally:
        conn.close()


def wait_answering(server, port=None, path="/", tls=False, unix=None, timeout=20.0):
    """Waits until the server answers a GET with 200 and returns the body. If it dies or
    does not answer in time, stops it (so its ports are free) and raises with its log."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline and server.alive():
        try:
            status, body = http_get("127.0.0.1", port, path, tls=tls, unix=unix)
            if status == 200:
                return body
            last = f"status {status}"
        except (OSError, ValueError, IndexError) as e:
            last = str(e)
        time.sleep(0.05)
    why = "exited" if not server.alive() else f"did not answer {path} within {timeout:.0f} s"
    tail = server.log_tail()
    server.stop()
    raise RuntimeError(f"{server.name} {why} ({last}):\n{tail}")


def children(pid):
    """The pids of a process's children (for the appserver master: its workers), whichever of
    its threads forked them."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def pid_alive(pid):
    """Whether pid is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tree_pids(pid):
    """pid and all its descendants."""
    out, pending = [], [pid]
    while pending:
        p = pending.pop()
        out.append(p)
        pending.extend(children(p))
    return out


def rss_kib(pid, field="VmRSS"):
    """A process's resident memory (or another /proc/PID/status field, VmHWM: its peak), 0 once
    it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid):
    return sum(rss_kib(p) for p in tree_pids(pid))


def tree_fds(pid):
    """Open file descriptors of pid and all its descendants."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total
