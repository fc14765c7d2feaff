"""The README's first command, ./demo, run the way a user would but non-interactively
(HEARTH_DEMO_CHECK=1): Pebble and the whole stack come up, certd gets the certificate, and the
page, the notes API (through the edge, certificate verified) and the redirect work; then
everything it started is gone."""
import os
import shutil
import subprocess

import pytest

from hearthkit import BUILD, SOURCE
from hearthkit.ports import free_port


def processes_named(config):
    """Pids of processes whose command line mentions config (the demo's work directory)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if config.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


@pytest.mark.skipif(not shutil.which("pebble"), reason="needs pebble")
def test_demo_checks_pass_and_leaves_nothing_running(short_tmp):
    env = dict(os.environ, HEARTH_BUILD=os.path.abspath(BUILD), HEARTH_DEMO_CHECK="1",
               HEARTH_DEMO_HTTP_PORT=str(free_port()), HEARTH_DEMO_HTTPS_PORT=str(free_port()),
               TMPDIR=str(short_tmp))
    r = subprocess.run([os.path.join(SOURCE, "demo")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo: all checks passed" in r.stdout
    assert "curl --cacert" in r.stdout
    assert "runtime error:" not in r.stdout + r.stderr
    # the work directory is removed and no process of the demo is left
    assert not [p for p in os.listdir(short_tmp) if p.startswith("hearth-demo.")]
    assert processes_named(str(short_tmp)) == []
