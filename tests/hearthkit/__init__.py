"""hearthkit: the one helper package of hearth's tests and benchmarks (tests/e2e, tests/chaos,
bench/). Each module does one job: ports (free ports, is something listening), procs (start and
stop processes with their output in a log, wait for them, pin them to a core, their memory),
certs (self-signed certificates, a throwaway CA), pebble (Let's Encrypt's test CA), edge (the
edge started on loopback), upstreams (small fake HTTP upstreams and servers), faultproxy (a proxy
in front of Pebble that answers chosen requests with faults), clients (raw HTTP and TLS clients,
responses as a client sees them), wsgi (WSGI applications served by hearth or Gunicorn), certd
(certd run against a Pebble), supervisor (a supervisor Stack with stand-in components), etcd
(etcd members on loopback or in network namespaces, etcdctl against them) and cluster (three
hosts in network namespaces, made by netns, with etcd and Pebble, for the cluster tests).

Importable once tests/ is on sys.path: tests/e2e/conftest.py, bench/hearthbench and
tests/chaos/run put it there."""
import os

SOURCE = os.environ.get("HEARTH_SOURCE") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("HEARTH_BUILD") or os.path.join(SOURCE, "build")
PYTHON = "/usr/bin/python3"  # Debian's CPython, the one the WSGI bridge embeds; not the PATH one


def binary(*parts, build=None):
    """Path of a built file, e.g. binary('edge', 'edge'); in build, or the tests' build."""
    return os.path.join(build or BUILD, *parts)
