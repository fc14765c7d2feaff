# Shared helpers for the side-by-side benchmarks: core pinning, wrk runs, RSS, the table.
# Server processes go on core 0 and the load generator on core 1 (taskset), so they never
# compete for one core. Sourced by the bench/*.sh scripts.

SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
WORK=$(mktemp -d /tmp/hearth-bench.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

build_release() {
    "$ROOT/tools/install-deps" "$ROOT/tools/bench-packages.txt"
    [ -d "$BUILD" ] || meson setup "$BUILD" --buildtype=release >/dev/null
    ninja -C "$BUILD" >/dev/null
}

# Start a server pinned to the server core; remember it for cleanup.
start_server() {
    taskset -c "$SERVER_CPU" "$@" >"$WORK/server-$#.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
}

stop_server() {
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

wait_http() { # url
    for _ in $(seq 1 200); do
        curl -sk -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "server at $1 did not come up" >&2
    return 1
}

# Requests per second from wrk on the client core; extra args go to wrk.
wrk_rps() { # url [wrk args...]
    local url=$1
    shift
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$@" "$url" 2>&1 |
        awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non2xx " $4 > "/dev/stderr"}'
}

# Resident memory of a process and its descendants, in KiB.
rss_tree_kib() { # pid
    local pids
    pids=$(pstree -p "$1" 2>/dev/null | grep -o '([0-9]\+)' | tr -d '()')
    [ -n "$pids" ] || pids=$1
    local total=0
    for p in $pids; do
        local r
        r=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)
        total=$((total + ${r:-0}))
    done
    echo "$total"
}

rss_kib() { # pid
    awk '/^VmRSS/ {print $2}' "/proc/$1/status"
}

print_header() {
    printf '%-44s %14s %14s %8s\n' "$1" "hearth" "$2" "ratio"
}

print_row() { # label ours theirs  (ratio = ours / theirs)
    local ratio
    ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    printf '%-44s %14s %14s %8s\n' "$1" "$2" "$3" "$ratio"
}
