#!/usr/bin/env bash
# The edge against nginx from Debian in the same run: the same ECDSA P-256 certificate, the same
# 1 KiB file, one worker each, access logs off, servers on one core and wrk on the other.
# Rows: static over HTTP and HTTPS keep-alive, a new TLS connection per request, the app path
# (edge -> appserver -> hello against nginx -> Gunicorn -> Flask and nginx -> appserver), and
# memory with IDLE idle keep-alive TLS connections. Usage: bench/edge.sh
# (DURATION, CONNECTIONS, IDLE, APPSERVER, HELLO_SO from the environment; see lib.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IDLE=${IDLE:-10000}
APPSERVER=${APPSERVER:-$BUILD/appserver/appserver}
HELLO_SO=${HELLO_SO:-$BUILD/examples/hello.so}
ulimit -n "$(ulimit -Hn)"

build_release

# --- material: one certificate, one file ---
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 768 /dev/urandom | base64 -w0 >"$WORK/www/1k.html"

E_HTTP=19080 E_HTTPS=19443 E_APP=19444
N_HTTP=29080 N_HTTPS=29443 N_FLASK=29444 N_APP=29445
GUNICORN_PORT=29500
have_app=false
[ -x "$APPSERVER" ] && [ -f "$HELLO_SO" ] && have_app=true

cat >"$WORK/nginx/nginx.conf" <<NGINX
user $(id -un);
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 15000; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  ssl_certificate $WORK/cert.pem;
  ssl_certificate_key $WORK/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  upstream flask { server 127.0.0.1:$GUNICORN_PORT; keepalive 32; }
  upstream app { server unix:$WORK/app.sock; keepalive 32; }
  server {
    listen 127.0.0.1:$N_HTTP;
    listen 127.0.0.1:$N_HTTPS ssl;
    root $WORK/www;
  }
  server {
    listen 127.0.0.1:$N_FLASK ssl;
    location / { proxy_pass http://flask; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$N_APP ssl;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX

# --- servers, all on the server core ---
# Site "localhost" has the certificate; site "127.0.0.1" (what wrk sends as Host) has none, so
# the plain listener serves it instead of redirecting. Both serve the same directory.
start_server "$BUILD/edge/edge" --workers 1 --http "127.0.0.1:$E_HTTP" \
    --https "127.0.0.1:$E_HTTPS" --keepalive-timeout 600s --max-connections 15000 --log-level warn \
    --server-name localhost --cert "$WORK/cert.pem" --key "$WORK/key.pem" --static "/=$WORK/www" \
    --server-name 127.0.0.1 --static "/=$WORK/www"
EDGE=$LAST_PID
start_server nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx"
NGINX=$LAST_PID
if $have_app; then
    start_server "$APPSERVER" -w 1 -b "unix:$WORK/app.sock" --log-level warn "$HELLO_SO"
    start_server gunicorn -w 1 -b "127.0.0.1:$GUNICORN_PORT" --log-level warning \
        --chdir "$ROOT/bench/peers" flask_hello:app
    start_server "$BUILD/edge/edge" --workers 1 --https "127.0.0.1:$E_APP" --log-level warn \
        --server-name localhost --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
        --upstream "unix:$WORK/app.sock"
fi
wait_http "http://127.0.0.1:$E_HTTP/1k.html"
wait_http "http://127.0.0.1:$N_HTTP/1k.html"

same_body() {
    [ "$(curl -sk "$1")" = "$(curl -sk "$2")" ] ||
        { echo "bodies differ: $1 $2" >&2; cat "$WORK"/nginx/error.log >&2; exit 1; }
}
same_body "https://127.0.0.1:$E_HTTPS/1k.html" "https://127.0.0.1:$N_HTTPS/1k.html"

row() { # label ours_url theirs_url [wrk args]
    local label=$1 ours=$2 theirs=$3
    shift 3
    print_row "$label" "$(wrk_rps "$ours" "$@")" "$(wrk_rps "$theirs" "$@")"
}

print_header "edge vs nginx (1 worker, ${CONNECTIONS} conns, ${DURATION}s), requests/s" "nginx"
row "1 KiB static, HTTP keep-alive" "http://127.0.0.1:$E_HTTP/1k.html" \
    "http://127.0.0.1:$N_HTTP/1k.html"
row "1 KiB static, HTTPS keep-alive" "https://127.0.0.1:$E_HTTPS/1k.html" \
    "https://127.0.0.1:$N_HTTPS/1k.html"
row "1 KiB static, new TLS connection each" "https://127.0.0.1:$E_HTTPS/1k.html" \
    "https://127.0.0.1:$N_HTTPS/1k.html" -H "Connection: close"
if $have_app; then
    wait_http "https://127.0.0.1:$E_APP/"
    wait_http "https://127.0.0.1:$N_FLASK/"
    same_body "https://127.0.0.1:$E_APP/" "https://127.0.0.1:$N_FLASK/"
    row "app: edge>appserver vs nginx>gunicorn>flask" "https://127.0.0.1:$E_APP/" \
        "https://127.0.0.1:$N_FLASK/"
    row "app: edge>appserver vs nginx>appserver" "https://127.0.0.1:$E_APP/" \
        "https://127.0.0.1:$N_APP/"
else
    echo "(app rows skipped: no $APPSERVER or $HELLO_SO)"
fi

idle_kib() { # pid port -> KiB the server tree grew by while IDLE connections are held
    local before after fifo=$WORK/hold.fifo ready=$WORK/hold.ready hp
    rm -f "$fifo" "$ready"
    mkfifo "$fifo"
    before=$(rss_tree_kib "$1")
    taskset -c "$CLIENT_CPU" python3 "$ROOT/bench/idle_conns.py" 127.0.0.1 "$2" "$IDLE" \
        <"$fifo" >"$ready" &
    hp=$!
    exec 7>"$fifo"
    while ! grep -q ready "$ready" 2>/dev/null && kill -0 "$hp" 2>/dev/null; do sleep 0.2; done
    after=$(rss_tree_kib "$1")
    exec 7>&-
    wait "$hp" || true
    echo $((after - before))
}
ours=$(idle_kib "$EDGE" "$E_HTTPS")
theirs=$(idle_kib "$NGINX" "$N_HTTPS")
print_row "RSS growth, $IDLE idle TLS conns (KiB)" "$ours" "$theirs"
print_row "  bytes per idle TLS connection" "$((ours * 1024 / IDLE))" "$((theirs * 1024 / IDLE))"
echo "(ratio: ours / theirs; for memory lower is better. Shared machine: numbers are noisy.)"
