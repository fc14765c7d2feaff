"""End-to-end tests of the supervisor: the real supervisor binary running stand-in components
(tests/e2e/standin.py, put in place through HEARTH_LIBEXEC_DIR) that speak the same protocols as
the real ones: READY=1 on NOTIFY_SOCKET, LISTEN_FDS sockets, signals. The stand-ins record what
happens to them, so restart policy, stop order and the socket handoff can be checked exactly.
This file: running (status, stderr prefixes, listen forms, stop), readiness and systemd's
notifications, the control protocol, privileges; test_supervisor_config, _restarts, _reload and
_https hold the rest, with the Stack of tests/hearthkit/supervisor.py.

With HEARTH_E2E_REAL=1 the tests that need no stand-in behaviour run against the real edge,
appserver and certd from the build tree instead (the others are skipped)."""
import json
import os
import signal
import socket
import subprocess
import tempfile

import pytest

from hearthkit.clients import http10_text
from hearthkit.ports import free_port, ipv6_loopback
from hearthkit.procs import pid_alive, wait_until
from hearthkit.supervisor import (COMPONENTS, REAL, STANDIN, SUPERVISOR, Stack, SystemdSocket,
                                  standin_only)

# --- running: status, stderr prefixes, flags, stop ----------------------------------------------


def test_start_status_and_stop(stack):
    stack.start()
    st = stack.status()
    assert {n: c["state"] for n, c in st.items()} == dict.fromkeys(COMPONENTS, "running")
    pids = [c["pid"] for c in st.values()]
    assert all(pid_alive(p) for p in pids)
    text = stack.ctl("status")
    assert text.returncode == 0
    assert "edge" in text.stdout and "running" in text.stdout and "RESTARTS" in text.stdout
    sock = os.path.join(stack.run_dir, "supervisor.sock")
    assert os.stat(sock).st_mode & 0o777 == 0o600
    if not REAL:
        wait_until(lambda: "edge: edge stand-in started" in stack.log(), what="prefixed stderr")
        assert "appserver: appserver stand-in started" in stack.log()
        starts = {n: stack.events(n)[0][3] for n in COMPONENTS}
        # The components run the supervisor's copy of the config it validated.
        copy = os.path.join(stack.run_dir, "validated.yaml")
        assert f"args=--config {copy}" in starts["edge"]
        assert f"args=-c {copy}" in starts["appserver"]
        assert f"args=--daemon -c {copy}" in starts["certd"]
        assert "fds=http" in starts["edge"] and "fds=app" in starts["appserver"]
        assert "fds= " in starts["certd"] + " "
    r = stack.ctl("stop")
    assert r.returncode == 0, r.stderr
    # `stop` returns once the supervisor is gone.
    assert stack.proc.poll() is not None or stack.wait_exit(2) == 0
    assert stack.proc.returncode == 0
    assert not any(pid_alive(p) for p in pids)
    assert not os.path.exists(sock)


@standin_only
def test_json_logs_stay_json_lines(stack):
    stack.write_config(extra="log_format: json\n")
    stack.start()
    wait_until(lambda: "stand-in started" in stack.log(), what="children's output")
    stack.ctl("stop")
    lines = [json.loads(line) for line in stack.log().splitlines()]
    assert any(o.get("component") == "supervisor" and "stack ready" in o["msg"] for o in lines)
    assert {"component": "edge", "msg": "edge stand-in started, pid " +
            str(stack.events("edge")[0][2])} in lines


@standin_only
@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_listen_forms_any_and_ipv6_only(stack):
    """":PORT" is every address, IPv4 and IPv6; "[::1]:PORT" is IPv6 only, as in nginx."""
    v6_port = free_port()
    stack.write_config()
    with open(stack.config) as f:
        text = f.read().replace(f'  http: ["127.0.0.1:{stack.port}"]\n',
                                f'  http: [":{stack.port}", "[::1]:{v6_port}"]\n')
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    assert "fds=http,http" in stack.events("edge")[0][3]
    assert http10_text(stack.port).startswith("HTTP/1.0 200")
    with socket.create_connection(("::1", stack.port), timeout=2):
        pass
    with socket.create_connection(("::1", v6_port), timeout=2):
        pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", v6_port), timeout=2).close()


def test_components_without_work_are_not_started(stack):
    stack.write_config(sites="  - name: example.localhost\n    tls: off\n")
    with open(stack.config) as f:
        text = f.read().replace(f"  modules: [{stack.module}]\n", "  workers: 1\n")
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    st = stack.status()
    assert st["edge"]["state"] == "running"
    assert st["appserver"]["state"] == "disabled" and st["certd"]["state"] == "disabled"


@standin_only
def test_second_instance_refused(stack, procs):
    stack.start()
    second = procs.start([SUPERVISOR, "start", "-c", stack.config], name="second",
                         env=stack.env())
    assert second.wait(timeout=5) == 1
    assert "already running" in procs.log(second)
    assert stack.count("edge", "start") == 1


# --- readiness and systemd notifications --------------------------------------------------------


@standin_only
def test_reports_ready_stopping_reloading_to_systemd(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"certd": "readyafter=1.2"})
    with SystemdSocket(stack.base) as ns:
        stack.start(env={"NOTIFY_SOCKET": ns.path}, wait=False)
        wait_until(lambda: stack.state("edge") == "running", what="edge ready")
        # certd has not said READY=1 yet: neither has the stack.
        assert not ns.drain("READY=1", timeout=0.3)
        assert stack.state("certd") == "starting"
        assert any("certd starting" in m for m in ns.got), ns.got
        assert ns.drain("READY=1", timeout=5)
        assert stack.state("certd") == "running"
        # The children's NOTIFY_SOCKET is the supervisor's own, not systemd's: the stand-ins'
        # READY=1 never reached this socket.
        assert sum("READY=1" in m for m in ns.got) == 1
        ns.got.clear()
        os.kill(stack.proc.pid, signal.SIGHUP)
        assert ns.drain("RELOADING=1") and ns.drain("READY=1")
        assert "MONOTONIC_USEC=" in next(m for m in ns.got if "RELOADING=1" in m)
        stack.proc.send_signal(signal.SIGTERM)
        assert ns.drain("STOPPING=1")
        assert stack.wait_exit() == 0


@standin_only
def test_not_ready_while_a_component_is_fatal(tmp_path, procs):
    """systemd must not call the service active while a component is FATAL."""
    stack = Stack(tmp_path, procs, modes={"certd": "exit2"})
    with SystemdSocket(stack.base) as ns:
        stack.start(env={"NOTIFY_SOCKET": ns.path})
        assert ns.drain("certd fatal")
        assert not ns.drain("READY=1", timeout=0.3), ns.got
        assert "stack ready" not in stack.log()
        with open(os.path.join(stack.libexec, "certd"), "w") as f:
            f.write(f'#!/bin/sh\nexec env STANDIN_CERTD= /usr/bin/python3 {STANDIN} certd "$@"\n')
        assert stack.ctl("restart", "certd").returncode == 0
        assert ns.drain("READY=1")
        assert "stack ready" in stack.log()


# --- the control protocol itself ----------------------------------------------------------------


def test_control_protocol_lines(stack):
    stack.start()
    path = os.path.join(stack.run_dir, "supervisor.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.settimeout(3)
        f = s.makefile("rwb")
        replies = []
        for line in [b'{"cmd":"status"}', b"not json", b'{"cmd":"dance"}',
                     b'{"cmd":"restart"}', b'{"cmd":"restart","name":"nosuch"}']:
            f.write(line + b"\n")
            f.flush()
            replies.append(json.loads(f.readline()))
    assert replies[0]["ok"] is True and len(replies[0]["components"]) == 3
    assert [r["ok"] for r in replies[1:]] == [False] * 4
    assert "bad JSON" in replies[1]["error"]
    assert replies[2]["error"] == "unknown command"
    r = stack.ctl("restart")
    assert r.returncode == 2 and "usage" in r.stderr


def test_client_without_supervisor(stack):
    stack.write_config()
    r = stack.ctl("status")
    assert r.returncode == 1
    assert "supervisor.sock" in r.stderr and "is the supervisor running" in r.stderr


# --- privileges ------------------------------------------------------------------------------------


@standin_only
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_children_run_as_configured_user(procs):
    # Everything must be reachable by "nobody", so not under pytest's private tmp dir.
    base = tempfile.mkdtemp(prefix="hearth-sv-", dir="/tmp")
    os.chmod(base, 0o777)
    try:
        stack = Stack(base, procs)
        stack.write_config(extra="user: nobody\ngroup: nogroup\n")
        stack.start()
        for name in COMPONENTS:
            assert "uid=65534" in stack.events(name)[0][3], stack.events(name)
        # run_dir: ours, shared with the children's group, sticky so they cannot touch our files.
        st = os.stat(stack.run_dir)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 65534, 0o1770)
        st = os.stat(os.path.join(stack.base, "state"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o750)
        st = os.stat(os.path.join(stack.run_dir, "app.sock"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o660)
        sock = os.stat(os.path.join(stack.run_dir, "supervisor.sock"))
        assert sock.st_uid == 0 and sock.st_mode & 0o777 == 0o600
        with open(f"/proc/{stack.proc.pid}/status") as f:
            assert "\nUid:\t0\t" in f.read()
        assert stack.ctl("stop").returncode == 0
    finally:
        subprocess.run(["rm", "-rf", base])
