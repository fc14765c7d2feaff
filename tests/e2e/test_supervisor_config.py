"""The supervisor refusing a bad configuration: exit 2 with a message naming the place and
nothing started; `check` finds what a start would fail on; a port in use. Against stand-in
components, or the real ones with HEARTH_E2E_REAL=1 (see test_supervisor.py)."""
import socket

import pytest

from hearthkit import binary
from hearthkit.certs import make_cert
from hearthkit.ports import free_port
from hearthkit.supervisor import COMPONENTS, Stack


BAD_CONFIGS = {
    "unknown_key": ("edge:\n  htp: [':80']\n", ["2:", "htp"]),
    "wrong_type": ("supervisor:\n  max_restarts: lots\n", ["2:", "max_restarts"]),
    "bad_listen": ("edge:\n  http: ['127.0.0.1:99999']\n", ["edge.http[0]", "99999"]),
    "bad_user": ("user: no-such-user-hearth\n", ["user", "no-such-user-hearth"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_check_and_start_exit_2(stack, case):
    text, needles = BAD_CONFIGS[case]
    with open(stack.config, "w") as f:
        f.write(text)
    r = stack.ctl("check")
    assert r.returncode == 2, r.stderr
    for n in needles + [stack.config]:
        assert n in r.stderr, r.stderr
    p = stack.start(wait=False)
    assert p.wait(timeout=5) == 2
    log = stack.log()
    assert stack.config in log and needles[-1] in log, log
    assert not any(stack.events(n) for n in COMPONENTS), "a component was started"


def test_missing_config_file(stack):
    r = stack.ctl("check")
    assert r.returncode == 2
    assert stack.config in r.stderr and "No such file" in r.stderr
    p = stack.start(wait=False, write=False)
    assert p.wait(timeout=5) == 2
    assert not any(stack.events(n) for n in COMPONENTS), "a component was started"


def test_check_ok(stack):
    stack.write_config()
    r = stack.ctl("check")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def site_with_files(cert, key):
    return f"  - name: example.com\n    tls:\n      - cert: {cert}\n        key: {key}\n"


# What a start would fail on, found by `check`: each case is (config, component, reason).
START_FAILURES = {
    "static_root": (lambda d: {"sites": "  - name: example.localhost\n    static:\n"
                                        f"      - prefix: /\n        root: {d}/missing\n"},
                    "edge", "static root"),
    "module_missing": (lambda d: {"module": f"{d}/missing.so"}, "appserver", "cannot load"),
    "module_abi": (lambda d: {"module": binary("appserver", "mod_abi.so")}, "appserver",
                   "ABI version"),
    "cert_missing": (lambda d: {"sites": site_with_files(f"{d}/missing.pem", f"{d}/missing.key")},
                     "edge", "No such file"),
    "key_mismatch": (lambda d: {"sites": site_with_files(make_cert(d, "a")[0], make_cert(d, "b")[1])},
                     "edge", "does not match"),
    "acme_without_agree_tos": (lambda d: {"sites": "  - name: www.example.com\n    tls: acme\n"},
                               "certd", "agree_tos"),
}


@pytest.mark.parametrize("case", sorted(START_FAILURES))
def test_check_finds_what_start_would_fail_on(tmp_path, procs, case):
    """`check` runs each component's own check, so it passes nothing a start then fails on; and
    start refuses it up front too (exit 2, nothing started) instead of a FATAL component."""
    make, component, reason = START_FAILURES[case]
    stack = Stack(tmp_path, procs, real=True)
    setup = make(stack.base)
    stack.module = setup.get("module", stack.module)
    stack.write_config(sites=setup.get("sites"), https=f'"127.0.0.1:{free_port()}"')
    r = stack.ctl("check")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{component} refuses it" in r.stderr and reason in r.stderr, r.stderr
    p = stack.start(wait=False)
    assert p.wait(timeout=20) == 2
    log = stack.log()
    assert reason in log and "nothing started" in log, log


def test_port_in_use_exit_2_nothing_started(stack):
    stack.write_config()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", stack.port))
        busy.listen()
        p = stack.start(wait=False)
        assert p.wait(timeout=5) == 2
    log = stack.log()
    assert "edge.http[0]" in log and f"127.0.0.1:{stack.port}" in log, log
    assert "in use" in log and f"{stack.config}:4:" in log, log
    assert "nothing started" in log
    assert not any(stack.events(n) for n in COMPONENTS), "a component was started"
