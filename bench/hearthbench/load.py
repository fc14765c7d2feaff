"""The load generators, on the client core: wrk for throughput (and for the failures a reload
causes), h2load at a fixed request rate for latency and for HTTP/2 throughput, and a holder of
idle TLS connections."""
import os
import re
import subprocess
import tempfile

from hearthkit.procs import client_argv

HERE = os.path.dirname(os.path.abspath(__file__))


class LoadError(RuntimeError):
    pass


def _run(argv, timeout):
    try:
        done = subprocess.run(client_argv(argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LoadError(f"{argv[0]} did not finish within {timeout} s")
    if done.returncode != 0:
        raise LoadError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def parse_wrk(text):
    """wrk's summary as numbers: requests, rps, socket errors (all kinds) and non-2xx/3xx."""
    def number(pattern, default=None):
        m = re.search(pattern, text)
        if m:
            return float(m.group(1))
        if default is None:
            raise LoadError(f"wrk printed no {pattern!r}:\n{text}")
        return default

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    return {
        "requests": int(number(r"(\d+) requests in")),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "non2xx": int(number(r"Non-2xx or 3xx responses: (\d+)", 0)),
    }


def wrk(url, duration, connections, headers=()):
    """One wrk run (one thread); returns parse_wrk's numbers."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    for h in headers:
        argv += ["-H", h]
    return parse_wrk(_run(argv + [url], timeout=duration + 30))


def wrk_clean(url, duration, connections, headers=()):
    """wrk for a throughput figure: any failed request makes the figure meaningless."""
    r = wrk(url, duration, connections, headers)
    if r["socket_errors"] or r["non2xx"] or not r["requests"]:
        raise LoadError(f"{url}: {r['socket_errors']} socket errors, {r['non2xx']} non-2xx "
                        f"responses in {r['requests']} requests")
    return r


def percentile(sorted_values, p):
    """The p-th percentile (nearest rank) of an ascending list."""
    if not sorted_values:
        raise LoadError("no latencies to take a percentile of")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def h2load_latency(url, rate, clients, duration):
    """HTTP/1.1 keep-alive requests at a fixed total rate (rate / clients per connection) for
    `duration` s after a 1 s warm-up; returns p50 and p99 in ms from h2load's per-request log.
    Each connection sends its next request on a timer, not as soon as the last one ends, so
    the rate does not drop when the server slows down."""
    per_client = max(1, rate // clients)
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        out = _run(["h2load", "--h1", "-t1", f"-c{clients}", f"--rps={per_client}",
                    f"-D{duration}", "--warm-up-time=1", f"--log-file={log.name}", url],
                   timeout=duration + 30)
        rows = [line.split("\t") for line in log.read().splitlines() if line]
    failed = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed",
                       out)
    bad = [r for r in rows if not r[1].startswith("2")]
    if not failed or int(failed.group(1)) or bad:
        raise LoadError(f"{url}: failed requests at {rate} req/s:\n{out}")
    latencies = sorted(int(r[2]) / 1000.0 for r in rows)
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "requests": len(latencies), "achieved_rps": len(latencies) / duration}


def h2load(url, duration, clients, streams):
    """HTTP/2 throughput: h2load with `clients` connections of `streams` concurrent streams
    each for `duration` s; returns rps and body MiB/s. Any failed request makes the figure
    meaningless, and so does a connection that did not get h2."""
    out = _run(["h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{duration}", url],
               timeout=duration + 30)
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s, ([\d.]+)([KMG]?)B/s", out)
    req = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if not m or not req or int(req.group(2)) or int(req.group(3)) or not int(req.group(1)):
        raise LoadError(f"{url}: failed requests over h2:\n{out}")
    if not proto or proto.group(1) != "h2":
        raise LoadError(f"{url}: h2load did not get h2:\n{out}")
    scale = {"": 1 / (1 << 20), "K": 1 / 1024, "M": 1, "G": 1024}[m.group(3)]
    return {"rps": float(m.group(1)), "mib_s": float(m.group(2)) * scale}


class IdleConnections:
    """Holds n idle keep-alive TLS connections (handshake and one request each, over HTTP/1.1
    or h2) to a port while the with-block runs."""

    def __init__(self, port, n, path="/1k.html", protocol="http/1.1"):
        self.argv = client_argv(["/usr/bin/python3", os.path.join(HERE, "idle_conns.py"),
                                 "127.0.0.1", str(port), str(n), path, protocol])
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise LoadError(f"idle connection holder failed: {line}{self.proc.stderr.read()}")
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return False
