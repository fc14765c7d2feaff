"""The supervisor's restart policy and stops: crashes restarted with a growing backoff, crash
loops going FATAL while the rest runs on, SIGKILLs under load, the listening sockets kept across
edge and appserver restarts so no connection is refused, leftover workers killed, the stop
order and timeout, fast stop. Against stand-in components, or the real ones with
HEARTH_E2E_REAL=1 (see test_supervisor.py)."""
import os
import signal
import socket
import threading
import time

from hearthkit.clients import http10_text, read_until_close
from hearthkit.procs import pid_alive, wait_until
from hearthkit.supervisor import COMPONENTS, REAL, STANDIN, ClientLoop, Stack, standin_only


@standin_only
def test_crash_restarts_with_growing_backoff(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"appserver": "crash_after=0.05"})
    stack.write_config(supervisor={"max_restarts": 10, "restart_delay": "100ms",
                                   "restart_delay_max": "400ms"})
    stack.start(wait=False)
    wait_until(lambda: stack.count("appserver", "start") >= 5, timeout=10, what="5 starts")
    starts = [e[0] for e in stack.events("appserver") if e[1] == "start"]
    crashes = [e[0] for e in stack.events("appserver") if e[1] == "crash"]
    gaps = [s - c for c, s in zip(crashes, starts[1:])]
    # 100ms, 200ms, 400ms, then capped at 400ms, plus the stand-in's own start-up time (a
    # Python interpreter: allow for a loaded machine).
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4]):
        assert delay - 0.01 <= gap < delay + 0.35, gaps
    st = stack.status()
    assert st["appserver"]["restarts"] >= 4
    assert st["appserver"]["last_exit"] == "exit 1"
    assert "restarting in" in stack.log()


@standin_only
def test_crash_loop_goes_fatal_others_keep_running(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"certd": "crash"})
    stack.start()
    wait_until(lambda: stack.state("certd") == "fatal", what="certd FATAL")
    # max_restarts 3: the first start and three restarts, then no more (no fork storm).
    assert stack.count("certd", "start") == 4
    time.sleep(0.6)
    assert stack.count("certd", "start") == 4
    st = stack.status()
    assert st["edge"]["state"] == "running" and st["appserver"]["state"] == "running"
    assert "FATAL" in stack.log()
    assert http10_text(stack.port).startswith("HTTP/1.0 200")
    text = stack.ctl("status").stdout
    assert "fatal" in text
    # An explicit restart tries again.
    assert stack.ctl("restart", "certd").returncode == 0
    wait_until(lambda: stack.count("certd", "start") == 5, what="certd restarted")


@standin_only
def test_fatal_edge_keeps_its_sockets_and_says_so(tmp_path, procs):
    """An edge that exits 2 (config error) cannot be helped by restarting: FATAL at once. The
    site is down, but not silently: the error says so and the sockets stay open, so clients
    wait instead of being told the site is gone, and a restart finds the same sockets."""
    stack = Stack(tmp_path, procs, modes={"edge": "exit2"})
    stack.start()
    assert stack.state("edge") == "fatal"
    assert "edge is FATAL: THE SITE IS DOWN" in stack.log()
    waiting = socket.create_connection(("127.0.0.1", stack.port), timeout=2)
    waiting.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    # Fixed (here: the stand-in told to behave), restarted: the waiting client gets its answer.
    with open(os.path.join(stack.libexec, "edge"), "w") as f:
        f.write(f'#!/bin/sh\nexec env STANDIN_EDGE= /usr/bin/python3 {STANDIN} edge "$@"\n')
    assert stack.ctl("restart", "edge").returncode == 0
    waiting.settimeout(5)
    assert read_until_close(waiting).startswith(b"HTTP/1.0 200")
    # a clean history, as docs/supervisor.md promises
    assert stack.status()["edge"]["restarts"] == 0


@standin_only
def test_config_error_exit_is_fatal_at_once(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"appserver": "exit2"})
    stack.start()
    assert stack.state("appserver") == "fatal"
    assert stack.count("appserver", "start") == 1
    assert "usage/config error" in stack.log()


def test_sigkill_each_component_under_load(stack):
    """SIGKILL each component's main process while clients keep asking the edge and the
    appserver's socket: each is restarted; the failed-request counts are reported, and nothing
    is ever refused."""
    stack.start()
    app_sock = os.path.join(stack.run_dir, "app.sock")
    with ClientLoop(stack.port) as edge_loop, ClientLoop(app_sock) as app_loop:
        for name in COMPONENTS:
            time.sleep(0.2)
            old = stack.status()[name]["pid"]
            os.kill(old, signal.SIGKILL)
            wait_until(lambda: stack.state(name) == "running"
                       and stack.status()[name]["pid"] != old, what=f"{name} restarted")
            assert stack.status()[name]["last_exit"] == "signal 9 (SIGKILL)"
            assert not pid_alive(old)
        time.sleep(0.2)
    for what, loop in (("edge", edge_loop), ("appserver", app_loop)):
        print(f"{what}: {loop.ok} ok, {loop.refused} refused, {loop.failed} cut by SIGKILL")
        assert loop.refused == 0, vars(loop)
        assert loop.ok > 10
    # SIGKILL can only cut the request the killed process was answering.
    assert edge_loop.failed <= 2 and app_loop.failed <= 2
    assert {c["restarts"] for c in stack.status().values()} == {1}


def test_edge_crash_loop_refuses_no_connection(stack):
    """The edge is the site: killed again and again (more often than max_restarts allows), it
    is restarted every time, soon, on the same sockets, and no connection is refused."""
    stack.start()
    with ClientLoop(stack.port) as loop:
        for i in range(6):
            old = stack.status()["edge"]["pid"]
            os.kill(old, signal.SIGKILL)
            wait_until(lambda: stack.running_anew("edge", old), what=f"edge back after kill {i}")
            time.sleep(0.5)  # the drill's pace: clients get served between kills
    print(f"edge x6 SIGKILL: {loop.ok} ok, {loop.refused} refused, {loop.failed} cut")
    assert loop.refused == 0, vars(loop)
    assert loop.failed <= 6 and loop.ok > 20, vars(loop)
    assert stack.status()["edge"]["restarts"] == 6


@standin_only
def test_leftover_workers_of_a_killed_component_are_killed(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"edge": "worker"})
    stack.start()
    worker = int(next(e[3] for e in stack.events("edge") if e[1] == "worker"))
    assert pid_alive(worker)
    old = stack.status()["edge"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: stack.state("edge") == "running" and stack.status()["edge"]["pid"] != old,
               what="edge restarted")
    # it ignores SIGTERM, so the stop timeout (1 s here) ends it
    wait_until(lambda: not pid_alive(worker), timeout=3, what="the old worker gone")
    assert "killed what was still left of process group" in stack.log()


def test_edge_restart_refuses_no_connection(stack):
    stack.start()
    with ClientLoop(stack.port) as graceful:
        time.sleep(0.2)
        old = stack.status()["edge"]["pid"]
        assert stack.ctl("restart", "edge").returncode == 0
        wait_until(lambda: stack.state("edge") == "running" and stack.status()["edge"]["pid"] != old,
                   what="edge back")
        time.sleep(0.3)
    # A graceful restart loses nothing at all.
    assert graceful.refused == 0 and graceful.failed == 0, vars(graceful)
    assert graceful.ok > 10
    with ClientLoop(stack.port) as killed:
        time.sleep(0.2)
        old = stack.status()["edge"]["pid"]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: stack.state("edge") == "running" and stack.status()["edge"]["pid"] != old,
                   what="edge back")
        time.sleep(0.3)
    # SIGKILL may cut the one request the old edge was answering; none is refused.
    print(f"edge SIGKILL: {killed.ok} ok, {killed.refused} refused, {killed.failed} cut")
    assert killed.refused == 0 and killed.failed <= 1, vars(killed)
    if not REAL:
        assert len(graceful.pids | killed.pids) == 3


def test_appserver_restart_refuses_no_connection(stack):
    """The appserver's socket (appserver.bind) is the supervisor's too: the edge's requests
    wait in its queue while the appserver restarts."""
    stack.start()
    app_sock = os.path.join(stack.run_dir, "app.sock")
    assert os.stat(app_sock).st_mode & 0o777 == 0o660
    with ClientLoop(app_sock) as loop:
        time.sleep(0.2)
        old = stack.status()["appserver"]["pid"]
        assert stack.ctl("restart", "appserver").returncode == 0
        wait_until(lambda: stack.state("appserver") == "running"
                   and stack.status()["appserver"]["pid"] != old, what="appserver back")
        time.sleep(0.3)
    assert loop.refused == 0 and loop.failed == 0, vars(loop)
    assert loop.ok > 10
    if not REAL:
        assert len(loop.pids) == 2


@standin_only
def test_graceful_stop_in_order_with_sigkill_after_timeout(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"edge": "slowstop=0.3", "appserver": "ignoreterm"})
    stack.start()
    pids = {n: c["pid"] for n, c in stack.status().items()}
    t0 = time.monotonic()
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.wait_exit() == 0
    took = time.monotonic() - t0
    ev = {n: {e[1]: e[0] for e in stack.events(n)} for n in COMPONENTS}
    # edge first and to its end, then appserver (killed after stop_timeout 1s), then certd.
    assert ev["edge"]["term"] < ev["edge"]["exit"] < ev["appserver"]["term"]
    assert "exit" not in ev["appserver"]
    assert ev["certd"]["term"] - ev["appserver"]["term"] >= 0.95
    assert 1.2 <= took < 4, took
    assert "sending SIGKILL" in stack.log()
    assert not any(pid_alive(p) for p in pids.values())


@standin_only
def test_stop_lets_requests_in_flight_complete(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"edge": "slowanswer=0.5"})
    stack.start()
    pids = [c["pid"] for c in stack.status().values()]
    result = {}
    t = threading.Thread(target=lambda: result.update(reply=http10_text(stack.port)))
    t.start()
    wait_until(lambda: stack.count("edge", "accept") == 1, what="request in flight")
    r = stack.ctl("stop")
    t.join()
    assert r.returncode == 0
    assert result["reply"].startswith("HTTP/1.0 200"), result
    assert stack.proc.returncode == 0 or stack.wait_exit(2) == 0
    assert not any(pid_alive(p) for p in pids)


@standin_only
def test_fast_stop_signals_everyone_at_once(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"edge": "slowstop=0.8"})
    stack.start()
    stack.proc.send_signal(signal.SIGINT)
    assert stack.wait_exit() == 0
    ints = [next(e[0] for e in stack.events(n) if e[1] == "int") for n in COMPONENTS]
    # A graceful stop would have waited for the edge's 0.8s.
    assert max(ints) - min(ints) < 0.4, ints


@standin_only
def test_stop_during_backoff_does_not_restart(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"certd": "crash"})
    stack.write_config(supervisor={"restart_delay": "2s", "restart_delay_max": "2s"})
    stack.start(wait=False)
    wait_until(lambda: stack.state("certd") == "backoff", what="certd in backoff")
    assert stack.ctl("stop").returncode == 0
    assert stack.proc.wait(timeout=5) == 0
    assert stack.count("certd", "start") == 1
