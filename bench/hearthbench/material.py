"""What both sides serve: one ECDSA P-256 certificate, the same files, and nginx's config."""
import os
import random
import sqlite3
import subprocess


def make_cert(directory, name="cert"):
    """A self-signed ECDSA P-256 certificate for localhost; returns (cert, key) paths."""
    cert = os.path.join(directory, f"{name}.pem")
    key = os.path.join(directory, f"{name}-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


def make_files(www):
    """The static files: 1k.html (1 KiB) and 1m.bin (1 MiB)."""
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "1k.html"), "wb") as f:
        f.write(os.urandom(768).hex().encode()[:1024])
    with open(os.path.join(www, "1m.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))


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

# what every bench nginx has: one master, its workers, no access log, keep-alive without a
# request limit, the certificate and TLS settings
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
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  ssl_certificate {cert};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  types {{ text/html html; application/octet-stream bin; }}
"""

NGINX_CONF = NGINX_HEAD + """\
  upstream gunicorn {{ server unix:{gunicorn_sock}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{http};
    listen 127.0.0.1:{https} ssl;
    root {www};
  }}
  server {{
    listen 127.0.0.1:{app} ssl;
    location / {{
      proxy_pass http://gunicorn;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""


def write_nginx_conf(directory, template=NGINX_CONF, **values):
    """nginx.conf for one master and `workers` workers: static files on http/https and a
    reverse proxy to Gunicorn's Unix socket on app; `connections` per worker (20000 unless
    given). Returns its path."""
    values.setdefault("connections", 20000)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w") as f:
        f.write(template.format(dir=directory, **values))
    return path


# nginx with HTTP/2 (rows 12a-12d): its own instance, so the HTTP/1.1 rows' nginx stays as it
# was; static files and a reverse proxy to the appserver, the edge's own upstream in row 12c
NGINX_H2_CONF = NGINX_HEAD + """\
  upstream appserver {{ server unix:{app_sock}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{h2} ssl http2;
    root {www};
  }}
  server {{
    listen 127.0.0.1:{h2_app} ssl http2;
    location / {{
      proxy_pass http://appserver;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""


def write_nginx_h2_conf(directory, **values):
    """nginx.conf with HTTP/2 on: static files on h2, a reverse proxy to the appserver's Unix
    socket app_sock on h2_app. Returns its path."""
    return write_nginx_conf(directory, template=NGINX_H2_CONF, **values)


# Caddy 2.6.2 (Debian's): the same files and certificate, access logs off (Caddy's default),
# no admin endpoint, no automatic HTTPS; default_sni for clients that send none (wrk and
# h2load connect to 127.0.0.1). HTTP/1.1 and h2 on the TLS ports, as ALPN chooses.
CADDYFILE = """\
{{
  admin off
  auto_https off
  default_sni localhost
  storage file_system {dir}/data
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


def write_caddyfile(directory, **values):
    """A Caddyfile serving www on http and https and proxying app to app_sock. Returns its
    path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "Caddyfile")
    with open(path, "w") as f:
        f.write(CADDYFILE.format(dir=directory, **values))
    return path
