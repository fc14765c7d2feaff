#!/usr/bin/env bash
# appserver + examples/hello against Gunicorn + Flask returning the same body: both on loopback
# TCP with the same worker count, wrk on the other core, both measured in the same run.
# Prints requests/s and one worker's RSS side by side. Usage: bench/appserver.sh
# (WORKERS, DURATION, CONNECTIONS from the environment; see lib.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
WORKERS=${WORKERS:-1}
PORT_OURS=${PORT_OURS:-18081}
PORT_PEER=${PORT_PEER:-18082}

build_release

start_server "$BUILD/appserver/appserver" -w "$WORKERS" -b "127.0.0.1:$PORT_OURS" \
    --log-level warn "$BUILD/examples/hello.so"
OURS=$LAST_PID
start_server gunicorn -w "$WORKERS" -b "127.0.0.1:$PORT_PEER" --log-level warning \
    --chdir "$ROOT/bench/peers" flask_hello:app
PEER=$LAST_PID
wait_http "http://127.0.0.1:$PORT_OURS/"
wait_http "http://127.0.0.1:$PORT_PEER/"

# same body from both, or the comparison means nothing
[ "$(curl -s "http://127.0.0.1:$PORT_OURS/")" = "$(curl -s "http://127.0.0.1:$PORT_PEER/")" ] ||
    { echo "bodies differ" >&2; exit 1; }

rps_ours=$(wrk_rps "http://127.0.0.1:$PORT_OURS/")
rps_peer=$(wrk_rps "http://127.0.0.1:$PORT_PEER/")

# one worker's RSS after the load (the first child of each master)
first_child() { pgrep -P "$1" | head -1; }
rss_ours=$(rss_kib "$(first_child "$OURS")")
rss_peer=$(rss_kib "$(first_child "$PEER")")

print_header "appserver vs Gunicorn+Flask ($WORKERS worker(s), ${CONNECTIONS} conns, ${DURATION}s)" \
    "gunicorn"
print_row "requests/s" "$rps_ours" "$rps_peer"
print_row "worker RSS (KiB)" "$rss_ours" "$rss_peer"
