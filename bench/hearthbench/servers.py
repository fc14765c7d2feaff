"""Both sides' servers, started the first time a row needs them and stopped at the end.

hearth: the edge (static files and TLS, over HTTP/1.1 and h2; in front of the appserver on a
Unix socket; compressing in front of row 15's JSON upstream) and the appserver with
examples/hello or, through its WSGI bridge, a Flask app from bench/apps/. Peers: nginx (one
master with the same certificate, files and worker count; for HTTP/2 an nginx of its own with
http2 on), Gunicorn and uWSGI with the same Flask apps, Caddy (static files and a proxy to the
appserver, rows 1-4 and 12a-12c; compressing, row 15). Every server is pinned to the server
core.

A server is named by a string: "edge_static", "nginx"... (a _start_NAME method below), or
"KIND:APP" for a Flask app of bench/apps/ served over HTTP on its own TCP port by KIND: appserver,
gunicorn or uwsgi (the port's name is the server's name)."""
import getpass
import os
import shutil

from . import material
from hearthkit.certs import make_cert
from hearthkit.edge import start_edge
from hearthkit.ports import free_port
from hearthkit.procs import SERVER_CPU, Processes, wait_answering

# Row 15's gzip level on every side: the edge's default (docs/edge.md), which nginx and Caddy are
# given (nginx's own default is 1, Caddy's 5).
GZIP_LEVEL = 6
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APPS = os.path.join(ROOT, "bench", "apps")


class Servers:
    def __init__(self, build, work, workers):
        self.build = build
        self.work = work
        self.workers = workers
        self.www = os.path.join(work, "www")
        material.make_files(self.www)
        self.cert, self.key = make_cert(work)
        self.page_db = os.path.join(work, "page.sqlite3")
        # every server pinned to the server core, each in a session of its own (stop() ends
        # a master with its workers)
        self.procs = Processes(work, cpu=SERVER_CPU, session=True)
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
    def start_edge(self, name, *args, http=None, https=None):
        """The edge with the benchmark's settings and args, on the ports named http and https
        (None: no such listener); returns its process once it listens."""
        # keep-alive without a request limit, on HTTP/1.1 and h2, as nginx's keepalive_requests
        # (h2load opens no new connection after a GOAWAY)
        return start_edge(self.procs, "--keepalive-timeout", "600s", "--h2-idle-timeout", "600s",
                          "--h2-max-requests", "10000000", "--max-connections", "20000",
                          "--log-level", "warn", *args,
                          http=http and self.port(http), https=https and self.port(https),
                          workers=self.workers, name=name, build=self.build).proc

    def _start_edge_static(self):
        # Site "localhost" has the certificate; site "127.0.0.1" (the Host wrk sends) has none,
        # so plain HTTP serves it rather than redirecting. Both serve the same directory.
        s = self.start_edge("edge-static", "--server-name", "localhost", "--cert", self.cert,
                            "--key", self.key, "--static", f"/={self.www}",
                            "--server-name", "127.0.0.1", "--static", f"/={self.www}",
                            http="edge_http", https="edge_https")
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
        s = self.procs.start(self._appserver_argv("unix:" + path), name="appserver-unix")
        wait_answering(s, unix=path)
        return s

    def _start_appserver_tcp(self):
        s = self.procs.start(self._appserver_argv(f"127.0.0.1:{self.port('appserver_tcp')}"),
                             name="appserver-tcp")
        wait_answering(s, self.port("appserver_tcp"))
        return s

    def _start_appserver_flask_unix(self):
        path = self.sock("appserver-flask")
        s = self.procs.start(self._appserver_wsgi_argv("unix:" + path, "flask_hello"),
                             name="appserver-flask-unix")
        wait_answering(s, unix=path)
        return s

    def _edge_in_front(self, name, appserver, sock):
        """The edge on HTTPS port `name` proxying to the running appserver `appserver`, whose
        Unix socket is sock(`sock`)."""
        self.get(appserver)
        s = self.start_edge(name.replace("_", "-"), "--server-name", "localhost",
                            "--cert", self.cert, "--key", self.key,
                            "--upstream", "unix:" + self.sock(sock), https=name)
        wait_answering(s, self.port(name), tls=True)
        return s

    def _start_edge_app(self):
        return self._edge_in_front("edge_app", "appserver_unix", "appserver")

    def _start_edge_flask(self):
        """The edge in front of the appserver running Flask's hello (row 11c)."""
        return self._edge_in_front("edge_flask", "appserver_flask_unix", "appserver-flask")

    def _start_edge_compress(self):
        """Row 15: the edge proxying the JSON upstream, compressing (gzip at its default
        level, GZIP_LEVEL; br and zstd at theirs)."""
        self.get("json_upstream")
        s = self.start_edge("edge-compress", "--server-name", "127.0.0.1",
                            "--upstream", "unix:" + self.sock("json"), "--compress",
                            http="edge_compress")
        wait_answering(s, self.port("edge_compress"), "/100k.json")
        return s

    # --- peers ---
    def _nginx(self, name, template, **values):
        """An nginx of its own from one of material's templates, in work/NAME."""
        directory = os.path.join(self.work, name)
        conf = material.write_conf(directory, template, "nginx.conf", user=getpass.getuser(),
                                   **values)
        return self.procs.start([shutil.which("nginx"), "-c", conf, "-p", directory], name=name)

    def _start_json_upstream(self):
        """Row 15's upstream: nginx serving 100k.json on a Unix socket to every side."""
        path = self.sock("json")
        s = self._nginx("json-upstream", material.NGINX_JSON_UPSTREAM_CONF, sock=path,
                        www=self.www, workers=1, connections=1024)
        wait_answering(s, unix=path, path="/100k.json")
        return s

    def _start_nginx_compress(self):
        self.get("json_upstream")
        port = self.port("nginx_compress")
        s = self._nginx("nginx-compress", material.NGINX_GZIP_CONF, workers=self.workers,
                        connections=20000, port=port, upstream_sock=self.sock("json"),
                        level=GZIP_LEVEL)
        wait_answering(s, port, "/100k.json")
        return s

    def _caddy(self, name, template, **values):
        """A Caddy 2.6 (Debian's) of its own from one of material's templates, in work/NAME, with
        as many OS threads running Go code (GOMAXPROCS) as the others have workers (Go would
        otherwise run threads on the load generator's core too)."""
        directory = os.path.join(self.work, name)
        conf = material.write_conf(directory, template, "Caddyfile", **values)
        return self.procs.start([shutil.which("caddy"), "run", "--config", conf,
                                 "--adapter", "caddyfile"], name=name,
                                env={"GOMAXPROCS": str(self.workers), "XDG_DATA_HOME": directory,
                                     "XDG_CONFIG_HOME": directory, "HOME": directory})

    def _start_caddy_compress(self):
        """Row 15: Caddy with `encode zstd gzip` in front of the same upstream."""
        self.get("json_upstream")
        port = self.port("caddy_compress")
        s = self._caddy("caddy-compress", material.CADDYFILE_COMPRESS, port=port,
                        upstream_sock=self.sock("json"), level=GZIP_LEVEL)
        wait_answering(s, port, "/100k.json")
        return s

    def _start_caddy(self):
        """Rows 1-4 and 12a-12c: Caddy serving the files over HTTP and HTTPS (HTTP/1.1 or h2),
        and proxying to the appserver (the edge's upstream in row 12c)."""
        self.get("appserver_unix")
        s = self._caddy("caddy", material.CADDYFILE, cert=self.cert, key=self.key, www=self.www,
                        app_sock=self.sock("appserver"), http=self.port("caddy_http"),
                        https=self.port("caddy_https"), app=self.port("caddy_app"))
        wait_answering(s, self.port("caddy_http"), "/1k.html")
        wait_answering(s, self.port("caddy_https"), "/1k.html", tls=True)
        wait_answering(s, self.port("caddy_app"), tls=True)
        return s

    def _start_nginx_h2(self):
        """Rows 12a-12d: nginx with HTTP/2 on its TLS ports, static files and a proxy to the
        appserver."""
        self.get("appserver_unix")
        s = self._nginx("nginx-h2", material.NGINX_H2_CONF, workers=self.workers,
                        connections=20000, cert=self.cert, key=self.key, www=self.www,
                        app_sock=self.sock("appserver"), h2=self.port("nginx_h2"),
                        h2_app=self.port("nginx_h2_app"))
        wait_answering(s, self.port("nginx_h2"), "/1k.html", tls=True)
        wait_answering(s, self.port("nginx_h2_app"), tls=True)
        return s

    def _start_nginx(self):
        self.get("gunicorn_unix")
        conf = material.write_nginx_conf(
            os.path.join(self.work, "nginx"), user=getpass.getuser(), workers=self.workers,
            cert=self.cert, key=self.key, www=self.www, gunicorn_sock=self.sock("gunicorn"),
            http=self.port("nginx_http"), https=self.port("nginx_https"),
            app=self.port("nginx_app"))
        s = self.procs.start([shutil.which("nginx"), "-c", conf, "-p", os.path.dirname(conf)],
                             name="nginx")
        wait_answering(s, self.port("nginx_http"), "/1k.html")
        wait_answering(s, self.port("nginx_https"), "/1k.html", tls=True)
        wait_answering(s, self.port("nginx_app"), tls=True)
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
        s = self.procs.start(argv, name=f"{kind}-{app}", env={"BENCH_PAGE_DB": self.page_db})
        wait_answering(s, self.port(name))
        return s

    def _start_gunicorn_unix(self):
        path = self.sock("gunicorn")
        s = self.procs.start(self._gunicorn_argv("unix:" + path, "flask_hello"),
                             name="gunicorn-unix")
        wait_answering(s, unix=path)
        return s
