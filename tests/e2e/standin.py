"""A stand-in for one hearth component (edge, appserver or certd) under the supervisor: a real
process that speaks the same protocols (READY=1 on NOTIFY_SOCKET, LISTEN_FDS sockets, signals)
and records what happens to it, so the supervisor can be tested before the real components.

usage: standin.py NAME [ARGS...]; behaviour from $STANDIN_<NAME> (comma-separated):
  crash          exit 1 at once            exit2        exit 2 (config error) at once
  crash_after=S  exit 1 after S seconds    noready      never send READY=1
  readyafter=S   send READY=1 only after S seconds
  slowanswer=S   take S seconds to answer a request
  worker         fork a worker process that outlives a killed main process
  ignoreterm     ignore SIGTERM/SIGINT     slowstop=S   take S seconds to stop
  askreload=NAME after READY=1, ask the supervisor to reload NAME (certd's "certificate changed")
Events go to $STANDIN_DIR/NAME.events as "MONOTONIC EVENT PID DETAIL" lines."""
import os
import signal
import socket
import sys
import threading
import time

NAME = sys.argv[1]
MODES = dict(
    (m.split("=", 1) + [""])[:2] for m in os.environ.get("STANDIN_" + NAME.upper(), "").split(",") if m
)
EVENTS = os.path.join(os.environ.get("STANDIN_DIR", "/tmp"), NAME + ".events")


def event(what, detail=""):
    with open(EVENTS, "a") as f:
        f.write(f"{time.monotonic():.6f} {what} {os.getpid()} {detail}\n")


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), "\0" + path[1:] if path.startswith("@") else path)


def listen_fds():
    """The sockets handed down by the LISTEN_FDS protocol, with their names."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    n = int(os.environ.get("LISTEN_FDS", "0"))
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    return [(socket.socket(fileno=3 + i), names[i] if i < len(names) else "") for i in range(n)]


# Held while accepting and answering one connection, so a graceful stop finishes the request
# in flight and leaves the rest in the listen queue for the next edge, as the real edge must.
serving = threading.Lock()
stopping = False


def answer(conn, name):
    with conn:
        conn.settimeout(2)
        try:
            conn.recv(4096)
            if "slowanswer" in MODES:
                event("accept")
                time.sleep(float(MODES["slowanswer"]))
            body = f"{NAME} {os.getpid()} {name}\n".encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass


def serve(sock, name):
    sock.settimeout(0.05)
    while True:
        with serving:
            if stopping:
                return
            try:
                conn, _ = sock.accept()
            except (socket.timeout, BlockingIOError):
                continue
            answer(conn, name)


def on_stop(signum, frame):
    global stopping
    event("term" if signum == signal.SIGTERM else "int")
    if "ignoreterm" in MODES:
        return
    stopping = True
    with serving:
        pass
    time.sleep(float(MODES.get("slowstop") or 0))
    event("exit")
    os._exit(0)


def main():
    fds = listen_fds()
    event("start", f"uid={os.getuid()} args={' '.join(sys.argv[2:])} fds={','.join(n for _, n in fds)}")
    print(f"{NAME} stand-in started, pid {os.getpid()}", file=sys.stderr, flush=True)
    if "worker" in MODES:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(1)
        event("worker", str(pid))
    if "crash" in MODES:
        print(f"{NAME} stand-in crashing", file=sys.stderr, flush=True)
        sys.exit(1)
    if "exit2" in MODES:
        sys.exit(2)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda s, f: event("hup"))
    signal.signal(signal.SIGUSR1, lambda s, f: event("usr1"))
    for sock, name in fds:
        threading.Thread(target=serve, args=(sock, name), daemon=True).start()
    if "readyafter" in MODES:
        time.sleep(float(MODES["readyafter"]))
    if "noready" not in MODES:
        notify("READY=1\nSTATUS=serving")
        event("ready")
    if MODES.get("askreload"):
        time.sleep(0.2)
        notify("HEARTH_RELOAD=" + MODES["askreload"])
    deadline = time.monotonic() + float(MODES["crash_after"]) if "crash_after" in MODES else None
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            event("crash")
            os._exit(1)
        time.sleep(0.05)


main()
