"""HTTP/2 connections ending well: GOAWAY on reload and on a graceful stop with no request
lost (streams in flight finish, later ones go to a new connection), and the named limits
(requests per connection, idle timeout, header list size)."""
import re
import signal
import subprocess
import threading
import time

import h2edge
from hearthkit.procs import wait_until
from h2edge import h2client, h2wire


def test_reload_under_load_loses_nothing(procs, tmp_path):
    e = h2edge.start(procs, tmp_path, "--workers", "2")
    loop = h2edge.Loop(e, depth=6)
    t = threading.Thread(target=loop.run, args=(2.5,))
    t.start()
    for _ in range(4):
        time.sleep(0.4)
        e.proc.send_signal(signal.SIGHUP)
    t.join(15)
    assert not t.is_alive()
    stats = f"{loop.ok} ok, {loop.goaways} GOAWAYs, {loop.connections} connections"
    assert loop.failed == 0, (stats, loop.errors[:5])
    assert loop.goaways >= 1 and loop.connections >= 2 and loop.ok > 20, stats


def test_reload_with_h2load(procs, tmp_path):
    """h2load opens no new connection after a GOAWAY and counts as failed what it then no
    longer sends (the requests it was about to start, those queued in its nghttp2): at most
    its streams in flight, 4 x 8 here. Every request that went out was answered 200; the
    exact count of nothing lost is test_reload_under_load_loses_nothing's."""
    e = h2edge.start(procs, tmp_path, "--workers", "2", "--h2-max-requests", "1000000")
    h2load = subprocess.Popen(["h2load", "-D", "2", "-c", "4", "-m", "8",
                               f"https://127.0.0.1:{e.port}/static/1k.html"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    e.proc.send_signal(signal.SIGHUP)
    out = h2load.communicate(timeout=20)[0]
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    assert m, out
    total, started, done, ok, failed, errored = map(int, m.groups())
    assert failed == errored <= 4 * 8 and ok == done - failed > 0, out
    assert re.search(r"status codes: \d+ 2xx, 0 3xx, 0 4xx, 0 5xx", out), out


def test_graceful_stop_finishes_streams_in_flight(procs, tmp_path):
    e = h2edge.start(procs, tmp_path)
    w = h2wire.connect(e)
    w.send(h2wire.headers(1, h2wire.request_block(path="/slow")))
    w.wait_for(lambda f: f.type == h2wire.HEADERS and f.stream_id == 1, "the slow answer's head")
    e.proc.send_signal(signal.SIGTERM)
    goaway = w.wait_for(lambda f: f if f.type == h2wire.GOAWAY else None, "GOAWAY")
    assert goaway.error_code == h2wire.NO_ERROR
    for f in w.frames(timeout=3):
        assert f.type != h2wire.RST_STREAM and (f.type != h2wire.GOAWAY or f.error_code == 0)
        if f.type == h2wire.DATA and f.flags & h2wire.END_STREAM:
            break
    body = b"".join(h2wire.data_of(f) for f in w.seen if f.type == h2wire.DATA)
    assert body == b"part0part1part2"  # the stream finishes
    w.closed()
    assert e.proc.wait(5) == 0


def test_requests_per_connection_then_goaway(procs, tmp_path):
    e = h2edge.start(procs, tmp_path, "--h2-max-requests", "3")
    w = h2wire.connect(e)
    for sid in (1, 3, 5):
        w.send(h2wire.headers(sid, h2wire.request_block(path="/static/1k.html")))
        assert w.response(sid)[0] == 200
    goaway = [f for f in w.seen if f.type == h2wire.GOAWAY]
    assert goaway and int.from_bytes(goaway[0].payload[:4], "big") == 5
    w.closed()


def test_idle_connection_closed(procs, tmp_path):
    e = h2edge.start(procs, tmp_path, "--h2-idle-timeout", "1s")
    w = h2wire.connect(e)
    w.send(h2wire.headers(1, h2wire.request_block(path="/static/1k.html")))
    w.response(1)
    started = time.monotonic()
    w.goaway(h2wire.NO_ERROR)
    w.closed()
    assert 0.8 < time.monotonic() - started < 2.5


def test_header_list_too_large(procs, tmp_path):
    e = h2edge.start(procs, tmp_path, "--h2-max-header-list-size", "2k")
    c = h2client.Client(e)
    assert c.fetch("GET", "/static/1k.html", [("x-big", "b" * 3000)]).status == 431
    assert c.fetch("GET", "/static/1k.html", [("x-small", "s" * 1000)]).status == 200
    c.close()
    wait_until(lambda: e.served(), what="edge serving")
