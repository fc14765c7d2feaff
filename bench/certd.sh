#!/usr/bin/env bash
# Issuance benchmark: certd --issue against certbot certonly --webroot and lego --http.webroot
# (Debian packages), each getting a two-name certificate from the same Pebble in the same run,
# each from a fresh state (account registration included). Prints the median wall time and
# the median peak RSS of RUNS issuances per client, and the ratios.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-5}

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

setup_pebble() {
    local t=$WORK/tls
    mkdir -p "$t" "$WORK/www"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$t/ca.key" \
        -out "$t/ca.pem" -days 2 -subj /CN=bench-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$t/key.pem" \
        -out "$t/csr.pem" -subj /CN=localhost 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$t/san.ext"
    openssl x509 -req -in "$t/csr.pem" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
        -out "$t/cert.pem" -days 2 -extfile "$t/san.ext" 2>/dev/null
    ACME_PORT=$(free_port) MGMT_PORT=$(free_port) HTTP_PORT=$(free_port) DNS_PORT=$(free_port)
    cat >"$WORK/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$ACME_PORT", "managementListenAddress": "127.0.0.1:$MGMT_PORT",
 "certificate": "$t/cert.pem", "privateKey": "$t/key.pem", "httpPort": $HTTP_PORT,
 "tlsPort": $(free_port), "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
    taskset -c "$SERVER_CPU" pebble-challtestsrv -dns01 "127.0.0.1:$DNS_PORT" -http01 "" \
        -https01 "" -tlsalpn01 "" -management "127.0.0.1:$(free_port)" -defaultIPv6 "" \
        >"$WORK/challtestsrv.log" 2>&1 &
    PIDS+=($!)
    taskset -c "$SERVER_CPU" /usr/bin/python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 \
        --directory "$WORK/www" >"$WORK/www.log" 2>&1 &
    PIDS+=($!)
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 taskset -c "$SERVER_CPU" pebble \
        -config "$WORK/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" >"$WORK/pebble.log" 2>&1 &
    PIDS+=($!)
    CA=$t/ca.pem
    DIR_URL=https://127.0.0.1:$ACME_PORT/dir
    for _ in $(seq 1 200); do
        curl -s --cacert "$CA" -o /dev/null "$DIR_URL" && return 0
        sleep 0.05
    done
    echo "pebble did not come up" >&2
    return 1
}

# One issuance on the client core; prints "seconds peak_rss_kib".
measure() { # name run command...
    local name=$1 run=$2
    shift 2
    local out=$WORK/$name-$run.time
    if ! taskset -c "$CLIENT_CPU" /usr/bin/time -f '%e %M' -o "$out" "$@" \
        >"$WORK/$name-$run.log" 2>&1; then
        echo "$name run $run failed; see $WORK/$name-$run.log" >&2
        cat "$WORK/$name-$run.log" >&2
        return 1
    fi
    cat "$out"
}

run_certd() { # run
    local d=$WORK/certd-$1
    measure certd "$1" "$BUILD/certd/certd" --issue "c$1.example.com" -d "www.c$1.example.com" \
        --server "$DIR_URL" --ca-bundle "$CA" --webroot "$WORK/www" --cert-dir "$d/certs" \
        --agree-tos --email bench@example.com
}

run_certbot() { # run
    local d=$WORK/certbot-$1
    REQUESTS_CA_BUNDLE=$CA measure certbot "$1" certbot certonly --webroot -w "$WORK/www" \
        -d "b$1.example.com" -d "www.b$1.example.com" --server "$DIR_URL" --agree-tos \
        -m bench@example.com --non-interactive --key-type ecdsa --config-dir "$d/config" \
        --work-dir "$d/work" --logs-dir "$d/logs"
}

run_lego() { # run
    local d=$WORK/lego-$1
    LEGO_CA_CERTIFICATES=$CA measure lego "$1" lego --server "$DIR_URL" --email bench@example.com \
        --accept-tos --domains "l$1.example.com" --domains "www.l$1.example.com" --http \
        --http.webroot "$WORK/www" --key-type ec256 --path "$d" run
}

median() { # numbers on stdin
    sort -g | awk '{a[NR] = $1} END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

build_release
setup_pebble
for client in certd certbot lego; do
    : >"$WORK/$client.results"
done
for run in $(seq 1 "$RUNS"); do
    # interleaved, so a slow moment of the machine hits all three alike
    for client in certd certbot lego; do
        "run_$client" "$run" >>"$WORK/$client.results"
    done
done
for client in certd certbot lego; do
    declare "${client}_time=$(awk '{print $1}' "$WORK/$client.results" | median)"
    declare "${client}_rss=$(awk '{print $2}' "$WORK/$client.results" | median)"
done

echo "certd issuance vs certbot and lego: $RUNS runs each, same Pebble, two names, medians"
print_header "metric" "certbot"
print_row "issuance wall time (s)" "$certd_time" "$certbot_time"
print_row "peak RSS (KiB)" "$certd_rss" "$certbot_rss"
print_header "metric" "lego"
print_row "issuance wall time (s)" "$certd_time" "$lego_time"
print_row "peak RSS (KiB)" "$certd_rss" "$lego_rss"
