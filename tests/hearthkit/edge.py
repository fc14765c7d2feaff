"""The edge started on loopback for a test, a benchmark or a Pebble's challenges: its
listeners on free (or given) ports, waited for until each one listens."""
from . import binary
from .ports import free_port, port_open
from .procs import wait_until


class Edge:
    """A running edge: its process (a procs.Server) and its plain and TLS ports (None where it
    has no such listener)."""

    def __init__(self, proc, http_port, https_port):
        self.proc, self.http, self.https = proc, http_port, https_port
        self.log_path = proc.log_path

    def log(self):
        return self.proc.log()


def _port(wanted):
    return free_port() if wanted is True else wanted or None


def start_edge(procs, *args, http=True, https=True, workers=1, name="edge", env=None,
               build=None, timeout=20, **kw):
    """procs.start() the edge (of build, or the tests' build) with --http on 127.0.0.1:HTTP
    (True: a free port; a number: that port; None or False: no plain listener), --https alike,
    --workers, then args; wait until it listens on each port. If it exits or does not listen
    in time, it is stopped and the error says why, with its log. Returns an Edge."""
    hp, sp = _port(http), _port(https)
    argv = [binary("edge", "edge", build=build)]
    if hp:
        argv += ["--http", f"127.0.0.1:{hp}"]
    argv += ["--workers", str(workers)]
    if sp:
        argv += ["--https", f"127.0.0.1:{sp}"]
    p = procs.start(argv + list(args), name=name, env=env, **kw)
    ports = [x for x in (hp, sp) if x]  # bound one after the other: wait for each
    try:
        wait_until(lambda: p.poll() is not None or all(port_open(x) for x in ports),
                   timeout=timeout, what=f"{name} listening")
        why = None if p.poll() is None else f"exited ({p.returncode})"
    except TimeoutError:
        why = f"did not listen within {timeout} s"
    if why:
        p.stop()
        raise RuntimeError(f"{name} {why}:\n{p.log()}")
    return Edge(p, hp, sp)
