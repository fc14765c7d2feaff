"""The WSGI bridge's life cycle (issue 11): a stuck worker's Python stack in the error log,
threads that run while the worker waits, apps that fail to import, how an app is found
(factory, --pythonpath, --env, --virtualenv), a segfault in C, and SIGHUP reloads under load.
HEARTH_WSGI_SERVER=gunicorn runs them against Gunicorn (see hearthkit.wsgi.start_wsgi)."""
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from hearthkit import PYTHON, binary
from hearthkit.clients import Load, parse_responses, read_until_close, recv_until
from hearthkit.ports import free_port
from hearthkit.procs import children, wait_until
from hearthkit.wsgi import WSGI_APPS, WsgiServer


def pid_of(server):
    r = server.get("/")
    assert r.status == 200, r
    return int(r.body.split()[0])


def killed_in_flight(server, path, timeout=15):
    """Request path from a worker that dies serving it: the client gets no answer, or a 5xx
    if the master answers for the dead worker."""
    s = server.connect(timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    try:
        answer = s.recv(65536)
    except (ConnectionResetError, TimeoutError):
        pass
    s.close()
    assert answer == b"" or parse_responses(answer)[0].status >= 500, answer


@pytest.mark.gunicorn_differs("it logs WORKER TIMEOUT and no Python stack")
def test_worker_timeout_logs_the_python_stack_and_replaces_the_worker(wsgi):
    server = wsgi("timeout_app:app", timeout=2)
    pid = pid_of(server)
    t0 = time.monotonic()
    killed_in_flight(server, "/hang")
    assert time.monotonic() - t0 < 10
    # faulthandler's format: '  File "/.../timeout_app.py", line 11 in stuck_forever'
    server.wait_log(r'File ".*timeout_app\.py", line \d+ in stuck_forever')
    server.wait_log(r"GET /hang")
    assert pid_of(server) != pid
    assert server.proc.poll() is None


def test_app_threads_run_while_the_worker_waits(wsgi):
    """The app's own thread counts every 10 ms; it can only count while the worker waits for
    the next request if the worker released the GIL."""
    server = wsgi("thread_app:app", workers=1)
    pid1, count1 = map(int, server.get("/").body.split())
    time.sleep(0.3)  # the interval under test: the worker is idle in its event loop
    pid2, count2 = map(int, server.get("/").body.split())
    assert pid1 == pid2
    assert count2 - count1 >= 10, (count1, count2)


LINE = r'File ".*{}", line \d+'
TRACEBACK = r"Traceback \(most recent call last\):\n(.*\n)*?  " + LINE + r"(.*\n)*?"


@pytest.mark.parametrize("app,error", [
    # a SyntaxError's traceback is where it is: file, line, the line and a caret
    ("broken_syntax_app:app",
     LINE.format("broken_syntax_app.py") + r"\n.*def app\(.*\n.*\^\nSyntaxError: "),
    ("broken_import_app:app", TRACEBACK.format("broken_import_app.py") +
     r"ModuleNotFoundError: No module named 'hearth_probe_no_such_module'"),
    ("broken_raise_app:app", TRACEBACK.format("broken_raise_app.py") +
     r"RuntimeError: probe failure at import"),
    ("no_such_module_anywhere:app", r"No module named 'no_such_module_anywhere'"),
])
def test_import_failure_exits_non_zero_with_the_traceback(wsgi, app, error):
    server = wsgi(app, wait=False)
    assert server.proc.wait(timeout=20) != 0
    log = server.log()
    assert re.search(error, log), log


def test_factory_pythonpath_and_env(wsgi, tmp_path):
    """module:factory() is called once; --pythonpath folders come first on sys.path; --env
    variables are set before the import (Gunicorn: --pythonpath and -e)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "probe_lib.py").write_text('VALUE = "from-pythonpath"\n')
    server = wsgi("loading_app:create_app()",
                  hearth_args=["--pythonpath", str(lib), "--env", "PROBE_ENV=set by flag"],
                  gunicorn_args=["--pythonpath", str(lib), "-e", "PROBE_ENV=set by flag"])
    r = server.get("/")
    assert (r.status, r.body) == (200, b"from-pythonpath set by flag set by flag\n"), r


@pytest.mark.hearth_only("Gunicorn runs inside the virtualenv instead")
def test_virtualenv_site_packages(wsgi, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "venv_probe.py").write_text('VALUE = "from the virtualenv"\n')
    server = wsgi("venv_app:app", hearth_args=["--virtualenv", str(venv)])
    assert server.get("/").body == b"from the virtualenv\n"


@pytest.mark.hearth_only("the appserver's YAML file")
def test_wsgi_settings_from_the_config_file(procs, tmp_path):
    """The same settings as the flags, from the appserver: section of the stack's file."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "probe_lib.py").write_text('VALUE = "from-pythonpath"\n')
    port = free_port()
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"""appserver:
  modules: ["loading_app:create_app()"]
  bind: ["127.0.0.1:{port}"]
  workers: 1
  chdir: {WSGI_APPS}
  pythonpath: [{lib}]
  env: ["PROBE_ENV=set in yaml"]
  mount: /yaml
""")
    p = procs.start_serving([binary("appserver", "appserver"), "-c", str(cfg)], [port],
                            name="appserver")
    server = WsgiServer(procs, p, "hearth", "127.0.0.1", port, None)
    r = server.get("/yaml/x")
    assert (r.status, r.body) == (200, b"from-pythonpath set in yaml set in yaml\n"), r
    assert server.get("/elsewhere").status == 404


def test_segfault_kills_only_that_worker(wsgi):
    server = wsgi("crash_app:app", workers=1)
    pid = pid_of(server)
    killed_in_flight(server, "/crash")
    assert pid_of(server) != pid  # served by a new worker
    assert server.proc.poll() is None


# ---- SIGHUP reload ----------------------------------------------------------------------


def deploy(src, target):
    """Replace the app's file the way a deploy should: a new file renamed over the old."""
    tmp = target.with_suffix(".new")
    shutil.copy(src, tmp)
    os.replace(tmp, target)


def fresh_connections(server):
    """A client's fetch: every request on a new connection."""
    return lambda: (lambda r: (r.status, r.body))(server.get("/", timeout=5))


def kept_connections(server):
    """A client's fetch: one connection per client thread, kept across requests (as the
    edge's upstream pool does); never a retry: http.client reconnects only after the server
    said Connection: close."""
    local = threading.local()

    def fetch():
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            local.conn.request("GET", "/")
            r = local.conn.getresponse()
            return r.status, r.read()
        except Exception:
            local.conn.close()
            local.conn = None
            raise
    return fetch


def v1_served(wsgi, tmp_path):
    """reload_app.py, version 1, served by two workers; the server and the file."""
    code = tmp_path / "code"
    code.mkdir()
    target = code / "reload_app.py"
    deploy(os.path.join(WSGI_APPS, "reload_v1.py"), target)
    return wsgi("reload_app:app", workers=2, chdir=code), target


def load_on(server, client=fresh_connections):
    """Four clients asking server in a loop, once they have had a few answers."""
    load = Load(client(server), threads=4)
    wait_until(lambda: len(load.bodies) >= 20 or load.failures, what="v1 answering under load")
    return load


@pytest.mark.parametrize("client", [fresh_connections, kept_connections])
def test_reload_picks_up_new_code_with_zero_failures(wsgi, tmp_path, client):
    server, target = v1_served(wsgi, tmp_path)
    load = load_on(server, client)
    old_workers = set(children(server.proc.pid))
    with load:
        deploy(os.path.join(WSGI_APPS, "reload_v2.py"), target)
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: load.bodies[-1:] == [b"version 2\n"], what="version 2 served")
        # requests in flight on the old workers may still answer v1 until they are gone
        wait_until(lambda: not old_workers & set(children(server.proc.pid)),
                   what="old workers gone")
        mark = len(load.bodies)
        wait_until(lambda: len(load.bodies) >= mark + 30, what="more answers after the switch")
    assert load.failures == []
    assert load.bodies[0] == b"v1\n"
    assert set(load.bodies[mark:]) == {b"version 2\n"}


def test_reload_lets_a_streaming_request_finish(wsgi, tmp_path):
    """A response still streaming from a version 1 worker when the reload comes completes."""
    server, target = v1_served(wsgi, tmp_path)
    go = tmp_path / "go"
    s = server.connect()
    s.sendall(f"GET /slow?{go} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    got = recv_until(s, b"v1 started\n")
    # the clients start once that worker is inside the app: connections it had accepted just
    # before would wait for /slow to end, which is another matter than the reload
    with load_on(server) as load:
        deploy(os.path.join(WSGI_APPS, "reload_v2.py"), target)
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: load.bodies[-1:] == [b"version 2\n"], what="version 2 served")
        go.touch()
        (r,) = parse_responses(got + read_until_close(s))
    assert (r.status, r.complete, r.body) == (200, True, b"v1 started\nv1 finished\n"), r
    assert load.failures == []


@pytest.mark.gunicorn_differs("its new workers fail to boot and the arbiter halts")
def test_reload_to_broken_code_keeps_the_old_version_serving(wsgi, tmp_path):
    server, target = v1_served(wsgi, tmp_path)
    with load_on(server) as load:
        deploy(os.path.join(WSGI_APPS, "broken_syntax_app.py"), target)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_log(r"SyntaxError")
        # the appserver's word that the reload is over and the old generation stays (as for
        # C modules): from here on the old version must answer everything
        server.wait_log(r"reload failed: .*still serving")
        mark = len(load.bodies)
        wait_until(lambda: len(load.bodies) >= mark + 50 or load.failures,
                   what="answers after the failed reload")
    assert load.failures == []
    assert set(load.bodies) == {b"v1\n"}
    assert server.proc.poll() is None


SLOW_IMPORT_APP = '''import time
VERSION = b"{version}\\n"
open(__file__ + ".{version}.read", "w").close()  # this version is what a worker is importing
time.sleep(1)  # a reload that takes a while: long enough for a second HUP to come during it


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [VERSION]
'''


def deploy_text(path, text):
    """Put a new version in place as a deploy does: whole, by rename, never half-written."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.mark.hearth_only("Gunicorn's arbiter handles HUPs its own way")
def test_hup_during_a_reload_is_not_dropped(wsgi, tmp_path):
    """Deploy, HUP, deploy again, HUP while the first reload's workers are still importing:
    the second deploy is what ends up served (it used to be ignored: "reload already in
    progress")."""
    code = tmp_path / "code"
    code.mkdir()
    target = code / "slow_app.py"
    deploy_text(target, SLOW_IMPORT_APP.format(version="one"))
    server = wsgi("slow_app:app", workers=1, chdir=code)
    assert server.get("/").body == b"one\n"
    deploy_text(target, SLOW_IMPORT_APP.format(version="two"))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log(r"reload: starting 1 workers of generation 2")
    deploy_text(target, SLOW_IMPORT_APP.format(version="three"))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log(r"reload complete: generation 3 serving", timeout=20)
    assert server.get("/").body == b"three\n"


@pytest.mark.hearth_only("Gunicorn's arbiter handles HUPs its own way")
def test_reload_queued_behind_a_failing_one_completes(wsgi, tmp_path):
    """A reload whose new code fails to import, and a HUP for a fixed deploy during it: the
    failed reload keeps the old code, then the queued one serves the fix. (Generation ids
    were reused, so the failed attempt's worker, reaped late, aborted the next attempt too.)"""
    code = tmp_path / "code"
    code.mkdir()
    target = code / "slow_app.py"
    deploy_text(target, SLOW_IMPORT_APP.format(version="one"))
    server = wsgi("slow_app:app", workers=1, chdir=code)
    deploy_text(target, SLOW_IMPORT_APP.format(version="two") +
                "raise ImportError('broken deploy')\n")
    server.proc.send_signal(signal.SIGHUP)
    # the new worker has read the broken version before the fix is deployed
    wait_until(lambda: (code / "slow_app.py.two.read").exists(), what="the broken version read")
    deploy_text(target, SLOW_IMPORT_APP.format(version="three"))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log(r"reload failed: .*still serving generation 1")
    server.wait_log(r"reload complete: generation 3 serving", timeout=20)
    assert server.get("/").body == b"three\n"
