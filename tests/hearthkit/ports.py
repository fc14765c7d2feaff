"""Free loopback ports, and whether something listens on a port or a Unix socket."""
import socket

_ports_given = set()


def free_port():
    """A port nothing listens on now, never the same one twice in a run (the kernel may hand a
    just-released port out again, and two servers of one run would then collide)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


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
