"""The drills' clients, bounded in count and time and on loopback only: a paced load of fresh
connections (so a refused connection is seen as one) whose every request is classified, and
the slowloris crowd (slowloris.py in a process of its own, so it does not take the load's
share of the interpreter)."""
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

KINDS = ("refused", "timeout", "reset", "5xx", "other")
SLOWLORIS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slowloris.py")


def tls_context():
    """A client context that checks nothing (the drills measure availability, not trust) and
    loads no CA store, so making one is cheap; one serves every thread of a load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def one_request(port, path, host, tls, timeout, ctx):
    """One GET on a new connection to 127.0.0.1:port, everything within `timeout` seconds.
    Returns "ok" (any 2xx), a kind of KINDS, and a detail for "other"."""
    deadline = time.monotonic() + timeout
    sock = None
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            sock = ctx.wrap_socket(sock, server_hostname=host)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", ""
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionRefusedError:
        return "refused", ""
    except (socket.timeout, TimeoutError):
        return "timeout", ""
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, ssl.SSLEOFError,
            ssl.SSLZeroReturnError):
        return "reset", ""
    except (OSError, ssl.SSLError) as e:
        return "other", repr(e)
    finally:
        if sock is not None:
            sock.close()
    head = data.split(b"\r\n", 1)[0].split()
    if len(head) < 2 or not head[1].isdigit():
        # closed before a whole status line: the server went away mid-request
        return "reset", ""
    status = int(head[1])
    if 200 <= status < 300:
        return "ok", ""
    if status >= 500:
        return "5xx", ""
    return "other", f"status {status}"


class Load:
    """`rate` requests/s in total from `threads` threads, each request on a new connection and
    bounded by `timeout`; runs from start() to stop(), and never sends more than `limit`.
    Every request is recorded as (start, end, outcome)."""

    def __init__(self, port, path, host, rate, tls=True, timeout=5.0, threads=8, limit=None):
        self.port, self.path, self.host, self.tls = port, path, host, tls
        self.timeout = timeout
        self.threads = threads
        self.interval = threads / rate
        self.limit = limit
        self.ctx = tls_context()
        self.records = []
        self.details = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.workers = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index):
        next_at = time.monotonic() + self.interval * index / self.threads
        while not self.done.is_set():
            with self.lock:
                if self.limit is not None and len(self.records) >= self.limit:
                    return
            wait = next_at - time.monotonic()
            if wait > 0 and self.done.wait(wait):
                return
            next_at = max(next_at + self.interval, time.monotonic())
            start = time.monotonic()
            outcome, detail = one_request(self.port, self.path, self.host, self.tls,
                                          self.timeout, self.ctx)
            with self.lock:
                self.records.append((start, time.monotonic(), outcome))
                if detail:
                    self.details[detail] = self.details.get(detail, 0) + 1

    def start(self):
        for w in self.workers:
            w.start()
        return self

    def stop(self):
        self.done.set()
        for w in self.workers:
            w.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def summarize(loads, faults=()):
    """Counts by outcome over several loads, p99 latency (ms) of every request, and the time
    to recover: for each fault moment, how long until a request started after it succeeded
    (the longest of them; None when no request after some fault succeeded)."""
    records = sorted(r for load in loads for r in load.records)
    out = {"requests": len(records), "ok": 0}
    out.update({k: 0 for k in KINDS})
    for _, _, outcome in records:
        out[outcome] += 1
    latencies = sorted(end - start for start, end, _ in records)
    out["p99_ms"] = (latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
                     if latencies else None)
    recover = 0.0
    for t in faults:
        ends = [end for start, end, outcome in records if start >= t and outcome == "ok"]
        if not ends:
            recover = None
            break
        recover = max(recover, min(ends) - t)
    out["recover_s"] = recover if faults else None
    out["faults"] = len(faults)
    details = {}
    for load in loads:
        for k, v in load.details.items():
            details[k] = details.get(k, 0) + v
    out["details"] = details
    return out


class Slowloris:
    """`count` connections to 127.0.0.1:port that send a request head one header line at a
    time and never finish it, reopened when the server closes them, until stop()."""

    def __init__(self, port, count, interval, connect_wait):
        self.proc = subprocess.Popen(
            [sys.executable, SLOWLORIS, str(port), str(count), str(interval), str(connect_wait)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.opened = json.loads(line) if line else {"error": "slowloris exited"}

    def stop(self):
        """Its counts: opened, connect failures, closed or reset by the server, held at the
        end."""
        try:
            self.proc.stdin.close()
            out = self.proc.stdout.read()
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return {"error": "slowloris did not stop"}
        return json.loads(out) if out.strip() else {"error": "slowloris printed nothing"}
