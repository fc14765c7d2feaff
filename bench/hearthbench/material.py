"""What both sides serve: the same files, and nginx's config (the one certificate is
hearthkit.certs.make_cert's)."""
import json
import os
import random
import sqlite3


def make_files(www):
    """The static files: 1k.html (1 KiB), 1m.bin (1 MiB) and 100k.json (an API answer)."""
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "1k.html"), "wb") as f:
        f.write(os.urandom(768).hex().encode()[:1024])
    with open(os.path.join(www, "1m.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    with open(os.path.join(www, "100k.json"), "wb") as f:
        f.write(api_json(100 * 1024))


def api_json(size):
    """A JSON list of records of `size` bytes, what an API answers: the same on every run, as
    repetitive as real records are (names, flags, dates, numbers) and no more."""
    rnd = random.Random(12)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
    out, n = [], 0
    while True:
        i = len(out)
        rec = json.dumps({"id": 10000 + i, "name": f"{rnd.choice(words)} {rnd.choice(words)}",
                          "email": f"user{rnd.randrange(100000)}@example.com",
                          "active": rnd.random() < 0.7, "score": round(rnd.uniform(0, 100), 2),
                          "created": f"2026-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}"
                                     f"T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00Z",
                          "tags": rnd.sample(words, rnd.randrange(4))})
        if n + len(rec) + 2 > size:
            break
        out.append(rec)
        n += len(rec) + 1
    body = ("[" + ",".join(out) + "]").encode()
    return body + b" " * (size - len(body))  # exactly size bytes: JSON allows the blanks


def make_page_db(path, notes=500):
    """The SQLite file bench/apps/flask_page.py reads: `notes` notes (the page shows the 50
    latest), the same content on every run. Made once; an existing file is kept."""
    if os.path.exists(path):
        return path
    rnd = random.Random(11)
    words = ["hearth", "edge", "worker", "socket", "reload", "certificate", "flask", "python",
             "template", "sqlite", "latency", "request", "<b>bold</b>", "caf\u00e9", "&amp;"]
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, "
                     "author TEXT NOT NULL, created TEXT NOT NULL, score REAL NOT NULL)")
        conn.execute("CREATE INDEX notes_created ON notes (created)")
        conn.executemany(
            "INSERT INTO notes (title, author, created, score) VALUES (?, ?, ?, ?)",
            [(" ".join(rnd.choice(words) for _ in range(6)), f"user{rnd.randrange(40)}",
              f"2026-{1 + i * 12 // notes:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00",
              rnd.uniform(0, 100)) for i in range(notes)])
    conn.close()
    return path


# nginx's temporary files inside its own directory (inside the http block), so it runs
# without /var/lib/nginx; the HTTP/2 suite's nginx (tests/h2/h2peers.py) uses it too
NGINX_TEMP_PATHS = """\
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
"""

# What every nginx of the bench starts with: one master, logs off, keep-alive without limits.
NGINX_HEAD = """\
user {user};
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
""" + NGINX_TEMP_PATHS + """\
  keepalive_requests 10000000;
  keepalive_timeout 600s;
"""

# The files and TLS of the nginx that serves them (the HTTP/1.1 rows' and the HTTP/2 rows')
NGINX_FILES_TLS = NGINX_HEAD + """\
  sendfile on;
  tcp_nopush on;
  ssl_certificate {cert};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  types {{ text/html html; application/octet-stream bin; }}
"""

# the reverse proxy to the app server, upstream `app` (the proxy rows: 5, 7, 11c and 12c)
NGINX_PROXY_TO_APP = """\
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
"""

NGINX_CONF = NGINX_FILES_TLS + """\
  upstream app {{ server unix:{gunicorn_sock}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{http};
    listen 127.0.0.1:{https} ssl;
    root {www};
  }}
  server {{
    listen 127.0.0.1:{app} ssl;
""" + NGINX_PROXY_TO_APP + """\
  }}
}}
"""


def write_nginx_conf(directory, **values):
    """nginx.conf for one master and `workers` workers: static files on http/https and a
    reverse proxy to Gunicorn's Unix socket on app; `connections` per worker (20000 unless
    given). Returns its path."""
    values.setdefault("connections", 20000)
    return write_conf(directory, NGINX_CONF, "nginx.conf", **values)


# nginx with HTTP/2 (rows 12a-12d): its own instance, so the HTTP/1.1 rows' nginx stays as it
# was; static files on h2, and on h2_app a reverse proxy to the appserver's Unix socket
# app_sock (the edge's own upstream in row 12c, so only the proxies differ)
NGINX_H2_CONF = NGINX_FILES_TLS + """\
  upstream app {{ server unix:{app_sock}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{h2} ssl http2;
    root {www};
  }}
  server {{
    listen 127.0.0.1:{h2_app} ssl http2;
""" + NGINX_PROXY_TO_APP + """\
  }}
}}
"""


# Row 15: the 100 KiB JSON comes from an nginx of its own on a Unix socket, the upstream every
# side's compressing proxy shares; nginx's side of the row is a second nginx in front of it.
NGINX_JSON_UPSTREAM_CONF = NGINX_HEAD + """\
  types {{ application/json json; }}
  server {{
    listen unix:{sock};
    root {www};
  }}
}}
"""

NGINX_GZIP_CONF = NGINX_HEAD + """\
  upstream json {{ server unix:{upstream_sock}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    gzip on;
    gzip_comp_level {level};
    gzip_types application/json;
    gzip_proxied any;
    gzip_vary on;
    location / {{
      proxy_pass http://json;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }}
  }}
}}
"""

# Caddy 2.6.2 (Debian's) beside nginx in rows 1-4 and 12a-12c: the same files and
# certificate, access logs off (Caddy's default), no admin endpoint, no automatic HTTPS;
# default_sni for the clients that send no name (wrk and h2load connect to 127.0.0.1).
# HTTP/1.1 and h2 on the TLS ports, as ALPN chooses; app proxies to the appserver's app_sock.
CADDYFILE = """\
{{
  admin off
  auto_https off
  default_sni localhost
}}
http://:{http} {{
  bind 127.0.0.1
  root * {www}
  file_server
}}
https://:{https} {{
  bind 127.0.0.1
  tls {cert} {key}
  root * {www}
  file_server
}}
https://:{app} {{
  bind 127.0.0.1
  tls {cert} {key}
  reverse_proxy unix/{app_sock}
}}
"""

# Row 15's Caddy: compressing in front of the JSON upstream
CADDYFILE_COMPRESS = """\
{{
  admin off
  auto_https off
}}
http://127.0.0.1:{port} {{
  encode {{
    zstd
    gzip {level}
  }}
  reverse_proxy unix/{upstream_sock}
}}
"""


def write_conf(directory, template, name, **values):
    """template filled with values (and dir=directory) in directory/name; returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(template.format(dir=directory, **values))
    return path
