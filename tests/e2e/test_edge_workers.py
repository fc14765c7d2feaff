"""The edge master and its workers: a worker that dies is replaced, and workers that keep dying
(more than 10 deaths within 10 s, counted by shared/backoff.c) make the master give up with
exit 1 instead of spinning."""
import os
import signal
import urllib.request
from hearthkit import binary
from hearthkit.ports import free_port
from hearthkit.procs import children, wait_until


EDGE = binary("edge", "edge")


def start_edge(procs, tmp_path, workers):
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello\n")
    port = free_port()
    p = procs.start_serving([EDGE, "--http", f"127.0.0.1:{port}", "--workers", str(workers),
                             "--server-name", "a.test", "--static", f"/={www}"], [port],
                            name="edge")
    wait_until(lambda: len(children(p.pid)) == workers, what="workers started")
    return p, port


def get(port):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/index.html",
                                 headers={"Host": "a.test"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read()


def kill_one_worker(p, seen):
    """SIGKILL a worker not killed before."""
    victim = next(w for w in children(p.pid) if w not in seen)
    seen.add(victim)
    os.kill(victim, signal.SIGKILL)


def test_a_dead_worker_is_replaced(procs, tmp_path):
    p, port = start_edge(procs, tmp_path, workers=2)
    seen = set()
    kill_one_worker(p, seen)
    wait_until(lambda: len(set(children(p.pid)) - seen) == 2, what="a replacement worker")
    assert get(port) == b"hello\n"
    assert p.poll() is None


def test_workers_that_keep_dying_stop_the_master(procs, tmp_path):
    p, _ = start_edge(procs, tmp_path, workers=2)
    seen = set()
    for _ in range(10):
        kill_one_worker(p, seen)
        wait_until(lambda: len(set(children(p.pid)) - seen) == 2, what="a replacement worker")
    assert p.poll() is None  # ten deaths are still tolerated
    kill_one_worker(p, seen)
    assert p.wait(timeout=10) == 1
    assert "workers keep dying" in procs.log(p)
