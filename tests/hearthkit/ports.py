"""Free loopback ports, and whether something listens on a port or a Unix socket."""
import os
import random
import socket

_ports_given = set()


def _port_range():
    """Where free_port() looks: below the kernel's ephemeral range (32768-60999 here), so the
    source port of some outgoing connection never takes the port of a server a test stops and
    starts again (a Pebble taken down and brought back kept failing to bind once in a while).
    HEARTH_TEST_PORTS=LO-HI gives two test runs side by side ranges of their own."""
    lo, _, hi = os.environ.get("HEARTH_TEST_PORTS", "20000-32000").partition("-")
    return int(lo), int(hi)


def free_port():
    """A port nothing listens on now, never the same one twice in a run."""
    lo, hi = _port_range()
    for _ in range(10000):
        port = random.randint(lo, hi)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def ipv6_loopback():
    """This machine can bind ::1 (tests of IPv6 listeners skip without it)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
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
