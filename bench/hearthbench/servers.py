"""Both sides' servers, started the first time a row needs them and stopped at the end.

hearth: the edge (static files; TLS in front of the appserver on a Unix socket) and the
appserver with examples/hello. Peers: nginx (one master with the same certificate, files and
worker count) and Gunicorn with the Flask app in bench/peers/flask_hello.py, which answers
with the same body. Every server is pinned to the server core."""
import getpass
import os
import shutil

from . import material
from .procs import Server, free_port, wait_answering

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.join(ROOT, "bench", "peers")


class Servers:
    def __init__(self, build, work, workers):
        self.build = build
        self.work = work
        self.workers = workers
        self.www = os.path.join(work, "www")
        material.make_files(self.www)
        self.cert, self.key = material.make_cert(work)
        self.running = {}
        self.ports = {}

    def port(self, name):
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    def sock(self, name):
        return os.path.join(self.work, f"{name}.sock")

    def get(self, name):
        """The named server, started (and checked to answer) on first use."""
        if name not in self.running:
            self.running[name] = getattr(self, "_start_" + name)()
        return self.running[name]

    def restart(self, name):
        """The named server stopped (if running) and started afresh: for a measurement that
        needs a process in its first state (memory a process once used stays counted)."""
        if name in self.running:
            self.running.pop(name).stop()
        return self.get(name)

    def stop_all(self):
        for server in reversed(list(self.running.values())):
            server.stop()
        self.running.clear()

    # --- hearth ---
    def edge_argv(self):
        return [os.path.join(self.build, "edge", "edge"), "--workers", str(self.workers),
                "--keepalive-timeout", "600s", "--max-connections", "20000",
                "--log-level", "warn"]

    def _start_edge_static(self):
        # Site "localhost" has the certificate; site "127.0.0.1" (the Host wrk sends) has none,
        # so plain HTTP serves it rather than redirecting. Both serve the same directory.
        argv = self.edge_argv() + [
            "--http", f"127.0.0.1:{self.port('edge_http')}",
            "--https", f"127.0.0.1:{self.port('edge_https')}",
            "--server-name", "localhost", "--cert", self.cert, "--key", self.key,
            "--static", f"/={self.www}",
            "--server-name", "127.0.0.1", "--static", f"/={self.www}"]
        s = Server("edge-static", argv, self.work)
        wait_answering(s, self.port("edge_http"), "/1k.html")
        wait_answering(s, self.port("edge_https"), "/1k.html", tls=True)
        return s

    def _appserver_argv(self, bind):
        return [os.path.join(self.build, "appserver", "appserver"), "-w", str(self.workers),
                "-b", bind, "--log-level", "warn",
                os.path.join(self.build, "examples", "hello.so")]

    def _start_appserver_unix(self):
        path = self.sock("appserver")
        s = Server("appserver-unix", self._appserver_argv("unix:" + path), self.work)
        wait_answering(s, unix=path)
        return s

    def _start_appserver_tcp(self):
        s = Server("appserver-tcp",
                   self._appserver_argv(f"127.0.0.1:{self.port('appserver_tcp')}"), self.work)
        wait_answering(s, self.port("appserver_tcp"))
        return s

    def _start_edge_app(self):
        self.get("appserver_unix")
        argv = self.edge_argv() + [
            "--https", f"127.0.0.1:{self.port('edge_app')}",
            "--server-name", "localhost", "--cert", self.cert, "--key", self.key,
            "--upstream", "unix:" + self.sock("appserver")]
        s = Server("edge-app", argv, self.work)
        wait_answering(s, self.port("edge_app"), tls=True)
        return s

    # --- peers ---
    def _start_nginx(self):
        self.get("gunicorn_unix")
        conf = material.write_nginx_conf(
            os.path.join(self.work, "nginx"), user=getpass.getuser(), workers=self.workers,
            cert=self.cert, key=self.key, www=self.www, gunicorn_sock=self.sock("gunicorn"),
            http=self.port("nginx_http"), https=self.port("nginx_https"),
            app=self.port("nginx_app"))
        s = Server("nginx", [shutil.which("nginx"), "-c", conf, "-p", os.path.dirname(conf)],
                   self.work)
        wait_answering(s, self.port("nginx_http"), "/1k.html")
        wait_answering(s, self.port("nginx_https"), "/1k.html", tls=True)
        wait_answering(s, self.port("nginx_app"), tls=True)
        return s

    def _gunicorn(self, name, bind):
        return Server(name, [shutil.which("gunicorn"), "-w", str(self.workers), "-b", bind,
                             "--log-level", "warning", "--chdir", PEERS, "flask_hello:app"],
                      self.work)

    def _start_gunicorn_unix(self):
        path = self.sock("gunicorn")
        s = self._gunicorn("gunicorn-unix", "unix:" + path)
        wait_answering(s, unix=path)
        return s

    def _start_gunicorn_tcp(self):
        s = self._gunicorn("gunicorn-tcp", f"127.0.0.1:{self.port('gunicorn_tcp')}")
        wait_answering(s, self.port("gunicorn_tcp"))
        return s
