"""Both sides' servers, started the first time a row needs them and stopped at the end.

hearth: the edge (static files; TLS in front of the appserver on a Unix socket) and the
appserver with examples/hello or, through its WSGI bridge, a Flask app from bench/apps/. Peers:
nginx (one master with the same certificate, files and worker count), Gunicorn and uWSGI with
the same Flask apps; for HTTP/2 an nginx of its own with http2 on, and Caddy (static files, and
a proxy to the appserver). Every server is pinned to the server core.

A server is named by a string: "edge_static", "nginx"... (a _start_NAME method below), or
"KIND:APP" for a Flask app of bench/apps/ served over HTTP on its own TCP port by KIND: appserver,
gunicorn or uwsgi (the port's name is the server's name)."""
import getpass
import os
import shutil

from . import material
from .procs import Server, free_port, wait_answering

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APPS = os.path.join(ROOT, "bench", "apps")


class Servers:
    def __init__(self, build, work, workers):
        self.build = build
        self.work = work
        self.workers = workers
        self.www = os.path.join(work, "www")
        material.make_files(self.www)
        self.cert, self.key = material.make_cert(work)
        self.page_db = os.path.join(work, "page.sqlite3")
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
            kind, _, app = name.partition(":")
            self.running[name] = (self._start_wsgi(kind, app) if app else
                                  getattr(self, "_start_" + name)())
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
        # keep-alive without a request limit, on HTTP/1.1 and h2, as nginx's keepalive_requests
        return [os.path.join(self.build, "edge", "edge"), "--workers", str(self.workers),
                "--keepalive-timeout", "600s", "--h2-idle-timeout", "600s",
                "--h2-max-requests", "10000000", "--max-connections", "20000",
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

    def _appserver_wsgi_argv(self, bind, app):
        """The appserver running bench/apps/APP.py's `app` through the WSGI bridge (issue 11);
        a build without the bridge fails here, with the reason, rather than at start."""
        bridge = os.path.join(self.build, "appserver", "hearth_wsgi.so")
        if not os.path.exists(bridge):
            raise RuntimeError(f"no WSGI bridge in this build ({bridge} is missing)")
        return [os.path.join(self.build, "appserver", "appserver"), "-w", str(self.workers),
                "-b", bind, "--log-level", "warn", "--chdir", APPS, f"{app}:app"]

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

    def _start_appserver_flask_unix(self):
        path = self.sock("appserver-flask")
        s = Server("appserver-flask-unix", self._appserver_wsgi_argv("unix:" + path,
                                                                      "flask_hello"), self.work)
        wait_answering(s, unix=path)
        return s

    def _edge_in_front(self, name, appserver, sock):
        """The edge on HTTPS port `name` proxying to the running appserver `appserver`, whose
        Unix socket is sock(`sock`)."""
        self.get(appserver)
        argv = self.edge_argv() + [
            "--https", f"127.0.0.1:{self.port(name)}",
            "--server-name", "localhost", "--cert", self.cert, "--key", self.key,
            "--upstream", "unix:" + self.sock(sock)]
        s = Server(name.replace("_", "-"), argv, self.work)
        wait_answering(s, self.port(name), tls=True)
        return s

    def _start_edge_app(self):
        return self._edge_in_front("edge_app", "appserver_unix", "appserver")

    def _start_edge_flask(self):
        """The edge in front of the appserver running Flask's hello (row 11c)."""
        return self._edge_in_front("edge_flask", "appserver_flask_unix", "appserver-flask")

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

    def _start_nginx_h2(self):
        """nginx with HTTP/2 on its TLS ports: static files, and a proxy to the appserver
        (the edge's upstream in row 12c, so only the proxies differ)."""
        self.get("appserver_unix")
        conf = material.write_nginx_h2_conf(
            os.path.join(self.work, "nginx-h2"), user=getpass.getuser(), workers=self.workers,
            cert=self.cert, key=self.key, www=self.www, app_sock=self.sock("appserver"),
            h2=self.port("nginx_h2"), h2_app=self.port("nginx_h2_app"))
        s = Server("nginx-h2", [shutil.which("nginx"), "-c", conf, "-p", os.path.dirname(conf)],
                   self.work)
        wait_answering(s, self.port("nginx_h2"), "/1k.html", tls=True)
        wait_answering(s, self.port("nginx_h2_app"), tls=True)
        return s

    def _start_caddy(self):
        """Caddy 2.6.2 with GOMAXPROCS as many as the workers (Go would otherwise run threads
        on the load generator's core too): static files over HTTP and HTTPS, a proxy to the
        appserver."""
        self.get("appserver_unix")
        d = os.path.join(self.work, "caddy")
        conf = material.write_caddyfile(
            d, cert=self.cert, key=self.key, www=self.www, app_sock=self.sock("appserver"),
            http=self.port("caddy_http"), https=self.port("caddy_https"),
            app=self.port("caddy_app"))
        env = {"GOMAXPROCS": str(self.workers), "HOME": d, "XDG_DATA_HOME": d,
               "XDG_CONFIG_HOME": d}
        s = Server("caddy", [shutil.which("caddy"), "run", "--config", conf, "--adapter",
                             "caddyfile"], self.work, env=env)
        wait_answering(s, self.port("caddy_http"), "/1k.html")
        wait_answering(s, self.port("caddy_https"), "/1k.html", tls=True)
        wait_answering(s, self.port("caddy_app"), tls=True)
        return s

    def _gunicorn_argv(self, bind, app):
        # sync is Gunicorn's default worker class; named so the figure says what it measures
        return ["/usr/bin/python3", "-m", "gunicorn", "-w", str(self.workers),
                "--worker-class", "sync", "-b", bind, "--log-level", "warning",
                "--chdir", APPS, f"{app}:app"]

    def _uwsgi_argv(self, bind, app):
        # Debian's uWSGI 2.0.21 with its python3 plugin. Its --http-socket closes the
        # connection after each response without saying so, which wrk counts as a read error;
        # the added header says it. (--http11-socket keeps connections open but serves fewer
        # requests/s with one sync worker, so the faster of uWSGI's two is measured.)
        # --die-on-term: SIGTERM stops it, as it stops every other server here (uWSGI 2.0
        # reloads on it).
        return [shutil.which("uwsgi"), "--plugin", "python3", "--http-socket", bind,
                "--add-header", "Connection: close", "--master", "--processes",
                str(self.workers), "--chdir", APPS, "--module", f"{app}:app",
                "--disable-logging", "--die-on-term"]

    def _start_wsgi(self, kind, app):
        """bench/apps/APP.py's `app` served by KIND over HTTP on the TCP port named KIND:APP."""
        argvs = {"appserver": self._appserver_wsgi_argv, "gunicorn": self._gunicorn_argv,
                 "uwsgi": self._uwsgi_argv}
        name = f"{kind}:{app}"
        bind = f"127.0.0.1:{self.port(name)}"
        argv = argvs[kind](bind, app)
        s = Server(f"{kind}-{app}", argv, self.work, env={"BENCH_PAGE_DB": self.page_db})
        wait_answering(s, self.port(name))
        return s

    def _start_gunicorn_unix(self):
        path = self.sock("gunicorn")
        s = Server("gunicorn-unix", self._gunicorn_argv("unix:" + path, "flask_hello"),
                   self.work)
        wait_answering(s, unix=path)
        return s
