"""The rows: what each side runs for one measurement, and which figures go in the table.

An Item measures every one of its sides once per round and each side returns a dict of
figures; a Line of the table compares one figure of hearth's side with the same figure of a
peer's side."""
from dataclasses import dataclass

from . import load, material, reloads
from .issuance import Pebble
from hearthkit.procs import children, encoded_body, http_get, rss_kib, tree_rss_kib


@dataclass
class Line:
    label: str
    metric: str
    ours: str
    theirs: str
    unit: str
    higher_is_better: bool


@dataclass
class Item:
    number: str
    title: str
    sides: dict          # side name -> function(ctx) -> {metric: value}
    lines: list
    setup: object = None     # function(ctx), before the first round
    teardown: object = None  # function(ctx), after the last round


class Context:
    """What the rows share: the servers, the settings, and a Pebble started on first use."""

    def __init__(self, servers, settings):
        self.servers = servers
        self.s = settings
        self._pebble = None

    def url(self, scheme, port_name, path="/"):
        return f"{scheme}://127.0.0.1:{self.servers.port(port_name)}{path}"

    def pebble(self):
        if self._pebble is None:
            self._pebble = Pebble(self.servers.work)
        return self._pebble

    def close(self):
        if self._pebble:
            self._pebble.stop()
        self.servers.stop_all()


def throughput(server, scheme, port_name, path, headers=(), connections=None):
    def run(ctx):
        ctx.servers.get(server)
        r = load.wrk_clean(ctx.url(scheme, port_name, path), ctx.s.duration,
                           connections or ctx.s.connections, headers)
        return {"rps": r["rps"]}
    return run


def big_file(server, port_name, path, mib, connections):
    """Body throughput of one file of `mib` MiB over HTTPS."""
    rps = throughput(server, "https", port_name, path, connections=connections)

    def run(ctx):
        return {"mib_s": rps(ctx)["rps"] * mib}
    return run


def rps_line(label, theirs, ours="hearth"):
    return Line(label, "rps", ours, theirs, "req/s", True)


def latency(server, port_name):
    def run(ctx):
        ctx.servers.get(server)
        return load.h2load_latency(ctx.url("https", port_name), ctx.s.rate, ctx.s.rate_clients,
                                   ctx.s.duration)
    return run


def h2_throughput(server, port_name, path, clients=50, streams=10):
    """h2load over h2: requests/s and body MiB/s."""
    def run(ctx):
        ctx.servers.get(server)
        return load.h2load(ctx.url("https", port_name, path), ctx.s.duration, clients, streams)
    return run


def idle_memory(server, port_name, protocol="http/1.1"):
    """RSS growth of the server's processes while it holds ctx.s.idle idle TLS connections
    (over `protocol`: http/1.1 or h2), from a freshly started server (memory freed after a
    round would stay counted)."""
    def run(ctx):
        pid = ctx.servers.restart(server).pid
        before = tree_rss_kib(pid)
        with load.IdleConnections(ctx.servers.port(port_name), ctx.s.idle, protocol=protocol):
            after = tree_rss_kib(pid)
        grown = max(0, after - before)
        return {"kib": grown, "bytes_per_conn": grown * 1024 / ctx.s.idle}
    return run


def worker_rss(server, path="/", requests=500):
    """RSS per worker process of an app server (the master's children) once the app is loaded
    and its workers have answered `requests` requests, from a freshly started server (memory a
    process once used stays counted)."""
    def run(ctx):
        master = ctx.servers.restart(server)
        port = ctx.servers.port(server)
        for _ in range(requests):
            status, _ = http_get("127.0.0.1", port, path)
            if status != 200:
                raise RuntimeError(f"{master.name} answered {path} with {status}")
        workers = children(master.pid)
        if len(workers) != ctx.s.workers:
            raise RuntimeError(f"{master.name} has {len(workers)} child processes, not "
                               f"{ctx.s.workers} workers")
        return {"kib": sum(rss_kib(w) for w in workers) / len(workers)}
    return run


def compressed(server, port_name, accept, coding):
    """Row 15: 100k.json through a proxy that compresses it, for a client sending
    `Accept-Encoding: accept`: requests/s (wrk), and the size of the body as it goes on the
    wire, checked to be in `coding` (a side that sent something else would measure nothing)."""
    def run(ctx):
        ctx.servers.get(server)
        port = ctx.servers.port(port_name)
        got, size = encoded_body("127.0.0.1", port, "/100k.json", accept)
        if got != coding:
            raise RuntimeError(f"{server} answered Accept-Encoding: {accept} with "
                               f"Content-Encoding: {got}, not {coding}")
        r = load.wrk_clean(ctx.url("http", port_name, "/100k.json"), ctx.s.duration,
                           ctx.s.connections, [f"Accept-Encoding: {accept}"])
        return {"rps": r["rps"], "bytes": size}
    return run


def compression_item(number, title, accept, sides, peers):
    """sides: name -> (server, port name, coding it must answer with); a line of requests/s
    and one of body bytes against each peer."""
    lines = []
    for peer in peers:
        coding = sides[peer][2]
        lines += [rps_line(f"100 KiB JSON {sides['hearth'][2]} vs {peer} {coding}", peer),
                  Line(f"  body bytes vs {peer} {coding}", "bytes", "hearth", peer, "B", False)]
    return Item(number, title, {name: compressed(server, port, accept, coding)
                                for name, (server, port, coding) in sides.items()}, lines)


HEARTH_COMPRESS = ("edge_compress", "edge_compress")
NGINX_COMPRESS = ("nginx_compress", "nginx_compress")
CADDY_COMPRESS = ("caddy_compress", "caddy_compress")


def page_db_setup(ctx):
    material.make_page_db(ctx.servers.page_db)


def app_alone(kind, app):
    """GET / of the Flask app bench/apps/APP.py over HTTP from the app server KIND alone
    (appserver, gunicorn or uwsgi; the server and its port are both named KIND:APP)."""
    name = f"{kind}:{app}"
    return throughput(name, "http", name, "/")


def wsgi_sides(app):
    """The Flask app APP from the appserver (through its WSGI bridge), Gunicorn and uWSGI."""
    return {"hearth": app_alone("appserver", app), "gunicorn": app_alone("gunicorn", app),
            "uwsgi": app_alone("uwsgi", app)}


def issuance(client):
    def run(ctx):
        return ctx.pebble().issue(client, ctx.servers.build)
    return run


def app_reload(server, port_name):
    def run(ctx):
        s = ctx.servers.get(server)
        return reloads.app_reload(s, ctx.url("http", port_name), ctx.s.reload_duration,
                                  ctx.s.reloads)
    return run


def cert_reload(name, start):
    def run(ctx):
        item_state = ctx.cert_reload_state
        if name not in item_state:
            side = reloads.CertReloadSide(name, ctx.servers.work,
                                          ctx.s.reloads * ctx.s.rounds)
            port = ctx.servers.port(f"{name}_reload")
            start(side, ctx.servers, port)
            item_state[name] = (side, port)
        side, port = item_state[name]
        return side.measure(port, ctx.s.reload_duration, ctx.s.reloads)
    return run


def cert_reload_setup(ctx):
    ctx.cert_reload_state = {}


def cert_reload_teardown(ctx):
    for side, _ in ctx.cert_reload_state.values():
        side.stop()


def static_sides(scheme, headers=()):
    """The 1 KiB file from the edge, nginx and Caddy over `scheme` (HTTP/1.1)."""
    return {side: throughput(server, scheme, f"{prefix}_{scheme}", "/1k.html", headers)
            for side, server, prefix in (("hearth", "edge_static", "edge"),
                                         ("nginx", "nginx", "nginx"),
                                         ("caddy", "caddy", "caddy"))}


def h2_sides(path, clients=50, streams=10):
    """A file over h2 from the edge, nginx (http2 on) and Caddy."""
    return {"hearth": h2_throughput("edge_static", "edge_https", path, clients, streams),
            "nginx": h2_throughput("nginx_h2", "nginx_h2", path, clients, streams),
            "caddy": h2_throughput("caddy", "caddy_https", path, clients, streams)}


def versus(label, metric, unit, peers=("nginx", "caddy"), higher_is_better=True):
    """One table line per peer; the second and later say only which peer."""
    return [Line(label if i == 0 else f"  vs {peer}", metric, "hearth", peer, unit,
                 higher_is_better) for i, peer in enumerate(peers)]


def items():
    return [
        Item("1", "1 KiB static file, HTTP keep-alive", static_sides("http"),
             versus("1 KiB static, HTTP keep-alive", "rps", "req/s")),
        Item("2", "1 KiB static file, HTTPS keep-alive", static_sides("https"),
             versus("1 KiB static, HTTPS keep-alive", "rps", "req/s")),
        Item("3", "new TLS connection per request (Connection: close)",
             static_sides("https", ["Connection: close"]),
             versus("new TLS connection per request", "rps", "conn/s")),
        Item("4", "1 MiB static file over HTTPS",
             {"hearth": big_file("edge_static", "edge_https", "/1m.bin", 1, 10),
              "nginx": big_file("nginx", "nginx_https", "/1m.bin", 1, 10),
              "caddy": big_file("caddy", "caddy_https", "/1m.bin", 1, 10)},
             versus("1 MiB static, HTTPS (10 conns)", "mib_s", "MiB/s")),
        Item("5", "app hello through TLS: edge > appserver vs nginx > Gunicorn > Flask",
             {"hearth": throughput("edge_app", "https", "edge_app", "/"),
              "nginx+gunicorn": throughput("nginx", "https", "nginx_app", "/")},
             [rps_line("app hello, edge>appserver vs nginx>gunicorn", "nginx+gunicorn")]),
        Item("6", "app hello: appserver alone vs Gunicorn + Flask alone (HTTP)",
             {"hearth": throughput("appserver_tcp", "http", "appserver_tcp", "/"),
              "gunicorn": app_alone("gunicorn", "flask_hello")},
             [rps_line("app hello, appserver vs gunicorn+flask", "gunicorn")]),
        Item("7", "latency at a fixed request rate on row 5",
             {"hearth": latency("edge_app", "edge_app"),
              "nginx+gunicorn": latency("nginx", "nginx_app")},
             [Line("p50 latency at fixed rate (row 5)", "p50_ms", "hearth", "nginx+gunicorn",
                   "ms", False),
              Line("p99 latency at fixed rate (row 5)", "p99_ms", "hearth", "nginx+gunicorn",
                   "ms", False)]),
        Item("8", "memory with idle keep-alive TLS connections",
             {"hearth": idle_memory("edge_static", "edge_https"),
              "nginx": idle_memory("nginx", "nginx_https")},
             [Line("RSS growth, idle TLS conns", "kib", "hearth", "nginx", "KiB", False),
              Line("  bytes per idle TLS connection", "bytes_per_conn", "hearth", "nginx",
                   "B", False)]),
        Item("9", "certificate issuance against Pebble (two names, fresh account)",
             {"certd": issuance("certd"), "certbot": issuance("certbot"),
              "lego": issuance("lego")},
             [Line("issuance wall time vs Certbot", "wall_s", "certd", "certbot", "s", False),
              Line("issuance wall time vs lego", "wall_s", "certd", "lego", "s", False),
              Line("issuance peak RSS vs Certbot", "rss_kib", "certd", "certbot", "KiB", False),
              Line("issuance peak RSS vs lego", "rss_kib", "certd", "lego", "KiB", False)]),
        Item("10a", "failed requests during app reloads: appserver HUP vs Gunicorn HUP",
             {"hearth": app_reload("appserver_tcp", "appserver_tcp"),
              "gunicorn": app_reload("gunicorn:flask_hello", "gunicorn:flask_hello")},
             [Line("failed requests, app server HUPs", "failed", "hearth", "gunicorn",
                   "requests", False)]),
        Item("10b", "failed requests during certificate reloads: edge HUP vs nginx reload",
             {"hearth": cert_reload("edge", reloads.start_edge),
              "nginx": cert_reload("nginx", reloads.start_nginx)},
             [Line("failed requests, certificate reloads", "failed", "hearth", "nginx",
                   "requests", False)],
             setup=cert_reload_setup, teardown=cert_reload_teardown),
        Item("11a", "Flask hello: appserver (WSGI bridge) vs Gunicorn sync vs uWSGI (HTTP)",
             wsgi_sides("flask_hello"),
             [rps_line("Flask hello, appserver vs gunicorn sync", "gunicorn"),
              rps_line("Flask hello, appserver vs uwsgi", "uwsgi")]),
        Item("11b", "Flask page (Jinja, 50 rows from SQLite): appserver vs Gunicorn vs uWSGI",
             wsgi_sides("flask_page"),
             [rps_line("Flask page, appserver vs gunicorn sync", "gunicorn"),
              rps_line("Flask page, appserver vs uwsgi", "uwsgi")],
             setup=page_db_setup),
        Item("11c", "Flask hello through TLS: edge > appserver > Flask vs nginx > Gunicorn > "
             "Flask",
             {"hearth": throughput("edge_flask", "https", "edge_flask", "/"),
              "nginx+gunicorn": throughput("nginx", "https", "nginx_app", "/")},
             [rps_line("Flask hello, edge>appserver vs nginx>gunicorn", "nginx+gunicorn")]),
        Item("11d", "worker RSS with the Flask page loaded: appserver worker vs Gunicorn worker",
             {"hearth": worker_rss("appserver:flask_page"),
              "gunicorn": worker_rss("gunicorn:flask_page")},
             [Line("worker RSS, Flask page loaded", "kib", "hearth", "gunicorn", "KiB", False)],
             setup=page_db_setup),
        Item("11e", "failed requests during Flask app reloads: appserver HUP vs Gunicorn HUP",
             {"hearth": app_reload("appserver:flask_hello", "appserver:flask_hello"),
              "gunicorn": app_reload("gunicorn:flask_hello", "gunicorn:flask_hello")},
             [Line("failed requests, Flask app HUPs", "failed", "hearth", "gunicorn",
                   "requests", False)]),
        Item("12a", "1 KiB static file over h2 (h2load, 50 connections x 10 streams)",
             h2_sides("/1k.html"), versus("1 KiB static, h2 (50x10 streams)", "rps", "req/s")),
        Item("12b", "1 MiB static file over h2 (h2load, 10 connections x 1 stream)",
             h2_sides("/1m.bin", clients=10, streams=1),
             versus("1 MiB static, h2 (10 conns)", "mib_s", "MiB/s")),
        Item("12c", "app hello over h2: edge > appserver vs nginx > appserver vs Caddy > "
             "appserver",
             {"hearth": h2_throughput("edge_app", "edge_app", "/"),
              "nginx": h2_throughput("nginx_h2", "nginx_h2_app", "/"),
              "caddy": h2_throughput("caddy", "caddy_app", "/")},
             versus("app hello over h2, each > appserver", "rps", "req/s")),
        Item("12d", "memory with idle h2 connections",
             {"hearth": idle_memory("edge_static", "edge_https", "h2"),
              "nginx": idle_memory("nginx_h2", "nginx_h2", "h2")},
             [Line("RSS growth, idle h2 conns", "kib", "hearth", "nginx", "KiB", False),
              Line("  bytes per idle h2 connection", "bytes_per_conn", "hearth", "nginx",
                   "B", False)]),
        compression_item("15a", "100 KiB JSON proxied and compressed, gzip level 6 on every side",
                         "gzip", {"hearth": HEARTH_COMPRESS + ("gzip",),
                                  "nginx": NGINX_COMPRESS + ("gzip",),
                                  "caddy": CADDY_COMPRESS + ("gzip",)}, ["nginx", "caddy"]),
        compression_item("15b", "100 KiB JSON proxied: hearth's br (level 5) vs nginx's gzip "
                         "(Debian's nginx has no br)", "br, gzip",
                         {"hearth": HEARTH_COMPRESS + ("br",),
                          "nginx": NGINX_COMPRESS + ("gzip",)}, ["nginx"]),
        compression_item("15c", "100 KiB JSON proxied: zstd (level 3) vs Caddy's zstd", "zstd",
                         {"hearth": HEARTH_COMPRESS + ("zstd",),
                          "caddy": CADDY_COMPRESS + ("zstd",)}, ["caddy"]),
    ]
