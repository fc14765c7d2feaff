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
Events go to $STANDIN_DIR/NAME.events as "MONOTONIC EVENT PID DETAIL" lines.

Like the real ones, a stand-in exits 2 on a config it cannot load (here: one holding bogus_key),
and `--check` checks a config as the real one would, as far as a stand-in can: static roots for
the edge, module files for the appserver; it exits 2 with the reason, or 0."""
import os
import re
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


def config_path():
    args = sys.argv[2:]
    for flag in ("--config", "-c"):
        if flag in args:
            return args[args.index(flag) + 1]
    return None


def config_problem():
    """What the real component would refuse in its config, as far as a stand-in knows."""
    with open(config_path()) as f:
        text = f.read()
    if "bogus_key" in text:
        return "unknown key 'bogus_key'"
    if NAME == "edge":
        for root in re.findall(r"root: (\S+)", text):
            if not os.path.isdir(root):
                return f"static root '{root}': No such file or directory"
    if NAME == "appserver":
        for module in re.search(r"modules: \[(.*)\]", text).group(1).split(","):
            if module.strip() and not os.path.exists(module.strip()):
                return f"{module.strip()}: cannot load: No such file or directory"
    return None


def check():
    problem = config_problem()
    event("check", problem or "ok")
    print(f"{NAME} stand-in: {problem or 'configuration ok'}", file=sys.stderr, flush=True)
    sys.exit(2 if problem else 0)


def main():
    if "--check" in sys.argv:
        check()
    if config_path() and config_problem():
        sys.exit(2)
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
