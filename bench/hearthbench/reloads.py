"""Row 10: failed requests while a server reloads under load.

wrk keeps 50 keep-alive connections busy for the whole run while the server is told to reload
`count` times at even intervals; a failure is anything wrk counts as one (connect, read, write
or timeout errors, non-2xx responses). wrk does not retry, so a request a server drops is a
failure here even where a browser would have retried it. Each side's reloads are checked to
have happened: new worker processes for the app servers, the new certificate served for the
TLS servers."""
import getpass
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

from . import material
from hearthkit.certs import make_cert

from .load import LoadError, parse_wrk
from hearthkit.procs import client_argv, tree_pids, wait_answering

CONNECTIONS = 50


def _under_load(url, duration, count, reload_once):
    """wrk on url for `duration` s, reload_once() called `count` times spread over it."""
    wrk = subprocess.Popen(client_argv(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}s",
                                        "--timeout", "5s", url]),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + duration * (i + 1) / (count + 1) - time.monotonic()))
        reload_once()
    out, _ = wrk.communicate(timeout=duration + 30)
    if wrk.returncode != 0:
        raise LoadError(f"wrk exited {wrk.returncode}:\n{out}")
    r = parse_wrk(out)
    return {"failed": r["socket_errors"] + r["non2xx"], "requests": r["requests"]}


def app_reload(server, url, duration, count):
    """HUP to an app server's master `count` times under load (appserver or Gunicorn: both
    start new workers and retire the old ones gracefully)."""
    workers_before = set(tree_pids(server.pid)) - {server.pid}
    result = _under_load(url, duration, count, lambda: server.send_signal(signal.SIGHUP))
    time.sleep(0.5)
    workers_after = set(tree_pids(server.pid)) - {server.pid}
    if not workers_after or workers_after & workers_before:
        raise RuntimeError(f"{server.name} kept workers {sorted(workers_after & workers_before)}"
                           f" through {count} HUPs: no reload happened")
    return result


class CertReloadSide:
    """A TLS server (edge or nginx) with certificate files of its own that each reload
    replaces with a fresh certificate, then HUP."""

    def __init__(self, name, work, count):
        self.dir = os.path.join(work, f"reload-{name}")
        os.makedirs(self.dir)
        self.cert = os.path.join(self.dir, "live.pem")
        self.key = os.path.join(self.dir, "live-key.pem")
        self.spares = [make_cert(self.dir, f"spare{i}") for i in range(count)]
        cert, key = make_cert(self.dir, "first")
        os.link(cert, self.cert)
        os.link(key, self.key)
        self.server = None

    def install_next(self):
        """Put the next spare certificate and key in place (each by rename) and HUP."""
        cert, key = self.spares.pop(0)
        os.rename(key, self.key)
        os.rename(cert, self.cert)
        self.last_cert = self.cert_der(self.cert)
        self.server.send_signal(signal.SIGHUP)

    @staticmethod
    def cert_der(path):
        with open(path) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def served_der(self, port):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.getpeercert(binary_form=True)

    def measure(self, port, duration, count):
        url = f"https://127.0.0.1:{port}/1k.html"
        result = _under_load(url, duration, count, self.install_next)
        deadline = time.monotonic() + 10
        while self.served_der(port) != self.last_cert:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.server.name} still serves an old certificate after "
                                   f"{count} reloads:\n{self.server.log_tail()}")
            time.sleep(0.1)
        return result

    def stop(self):
        if self.server:
            self.server.stop()


def start_edge(side, servers, port):
    side.server = servers.start_edge("edge-reload", "--server-name", "localhost",
                                     "--cert", side.cert, "--key", side.key,
                                     "--static", f"/={servers.www}", https="edge_reload")
    wait_answering(side.server, port, "/1k.html", tls=True)


def start_nginx(side, servers, port):
    conf = material.write_nginx_conf(
        os.path.join(side.dir, "nginx"), user=getpass.getuser(), workers=servers.workers,
        cert=side.cert, key=side.key, www=servers.www, gunicorn_sock=servers.sock("unused"),
        http=servers.port("nginx_reload_http"), https=port,
        app=servers.port("nginx_reload_app"))
    side.server = servers.procs.start([shutil.which("nginx"), "-c", conf, "-p",
                                        os.path.dirname(conf)], name="nginx-reload")
    wait_answering(side.server, port, "/1k.html", tls=True)
