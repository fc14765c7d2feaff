"""The supervisor's reloads and log reopening: all, one or refused, all or nothing with each
outcome named, the last validated config on restart, a reload waiting for a starting
component, SIGUSR1, and certd asking for the edge's reload. Against stand-in components, or the
real ones with HEARTH_E2E_REAL=1 (see test_supervisor.py)."""
import os
import signal
import time

from hearthkit import binary
from hearthkit.clients import http10_text
from hearthkit.procs import wait_until
from hearthkit.supervisor import COMPONENTS, REAL, Stack, standin_only


@standin_only
def test_reload_all_one_and_refused(stack):
    stack.start()
    stack.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: all(stack.count(n, "hup") == 1 for n in COMPONENTS), what="HUP to all")
    assert stack.ctl("reload", "edge").returncode == 0
    wait_until(lambda: stack.count("edge", "hup") == 2, what="HUP to edge")
    assert stack.count("appserver", "hup") == 1
    for cmd in ("reload", "restart"):
        r = stack.ctl(cmd, "nosuch")
        assert r.returncode == 1 and "no such component 'nosuch'" in r.stderr, r.stderr
    # A config that no longer loads is refused; the running one stays.
    with open(stack.config, "a") as f:
        f.write("bogus_key: 1\n")
    r = stack.ctl("reload")
    assert r.returncode == 1 and "bogus_key" in r.stderr, r.stderr
    time.sleep(0.2)
    assert stack.count("edge", "hup") == 2
    assert "reload refused" in stack.log()


def test_restart_runs_the_last_validated_config(stack):
    """A broken file on disk (its reload refused) plus a crash is no outage: a restarted
    component runs the config that was last validated, not the file as it is now."""
    stack.start()
    with open(stack.config, "a") as f:
        f.write("bogus_key: 1\n")
    r = stack.ctl("reload")
    assert r.returncode == 1 and "bogus_key" in r.stderr, r.stderr
    for name in COMPONENTS:
        old = stack.status()[name]["pid"]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: stack.running_anew(name, old), what=f"{name} running again")
    assert http10_text(stack.port).startswith("HTTP/1.")
    assert {c["state"] for c in stack.status().values()} == {"running"}


def test_reload_is_all_or_nothing_and_names_each_outcome(stack):
    """One component refusing the new config (here the edge, for a missing static root) means
    none takes it: the appserver keeps its module. Each component's outcome is named."""
    if REAL:
        stack.module, new_module = binary("appserver", "mod_v1.so"), binary("appserver", "mod_v2.so")
    else:
        new_module = os.path.join(stack.base, "app2.so")
        open(new_module, "w").close()
    stack.write_config()
    stack.start()
    app_sock = os.path.join(stack.run_dir, "app.sock")
    root = os.path.join(stack.base, "static")
    stack.module = new_module
    stack.write_config(sites=f"  - name: example.localhost\n    static:\n"
                             f"      - prefix: /s/\n        root: {root}\n")
    r = stack.ctl("reload")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "edge: refused:" in r.stderr and "static root" in r.stderr, r.stderr
    assert "appserver: unchanged" in r.stderr and "certd: unchanged" in r.stderr, r.stderr
    if REAL:
        assert "v1" in http10_text(app_sock)
    else:
        assert not any(stack.count(n, "hup") for n in COMPONENTS)
    # Fixed, the same reload goes through, for everyone.
    os.mkdir(root)
    r = stack.ctl("reload")
    assert r.returncode == 0, r.stderr
    for name in COMPONENTS:
        assert f"{name}: reloaded" in r.stdout, r.stdout
    if REAL:
        wait_until(lambda: "v2" in http10_text(app_sock), what="the new module answering")
    else:
        wait_until(lambda: all(stack.count(n, "hup") == 1 for n in COMPONENTS), what="HUP to all")


@standin_only
def test_reload_waits_for_a_starting_component(tmp_path, procs):
    """SIGHUP's default action kills: a component still starting gets it once READY=1."""
    stack = Stack(tmp_path, procs, modes={"certd": "readyafter=0.8"})
    stack.start(wait=False)
    wait_until(lambda: stack.state("edge") == "running", what="edge ready")
    assert stack.state("certd") == "starting"
    assert stack.ctl("reload").returncode == 0
    wait_until(lambda: stack.count("edge", "hup") == 1, what="edge reloaded")
    assert stack.count("certd", "hup") == 0
    wait_until(lambda: stack.count("certd", "hup") == 1, what="certd reloaded once ready")
    assert stack.state("certd") == "running" and stack.status()["certd"]["restarts"] == 0


@standin_only
def test_usr1_reopens_children_logs(stack):
    stack.start()
    stack.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: all(stack.count(n, "usr1") == 1 for n in COMPONENTS), what="USR1 to all")


def test_usr1_kills_no_component(stack):
    """logrotate's USR1, again and again: every component reopens its logs, none dies of it."""
    stack.start()
    pids = {n: c["pid"] for n, c in stack.status().items()}

    def certd_reopened():
        if REAL:
            return stack.log().count("SIGUSR1: log reopened")
        return stack.count("certd", "usr1")

    for i in range(1, 4):
        stack.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: certd_reopened() == i, what=f"certd's log reopen #{i}")
    st = stack.status()
    assert {n: c["pid"] for n, c in st.items()} == pids
    assert {c["restarts"] for c in st.values()} == {0}, st


@standin_only
def test_certd_asks_for_edge_reload(tmp_path, procs):
    stack = Stack(tmp_path, procs, modes={"certd": "askreload=edge"})
    stack.start()
    wait_until(lambda: stack.count("edge", "hup") == 1, what="edge reloaded at certd's request")
    assert stack.count("appserver", "hup") == 0
    assert "certd asks to reload edge" in stack.log()


@standin_only
def test_certd_reload_request_revives_a_fatal_edge(tmp_path, procs):
    """The edge exits 2 while HTTPS has no certificate; certd's "certificate changed" is the
    moment to try it again."""
    stack = Stack(tmp_path, procs, modes={"edge": "exit2", "certd": "readyafter=0.5,askreload=edge"})
    stack.start()
    wait_until(lambda: stack.count("edge", "start") == 2, what="edge started again")
    wait_until(lambda: "certd asks to reload edge: restarted (it was FATAL)" in stack.log(),
               what="the reason logged")
