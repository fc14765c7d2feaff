"""The notes site (examples/notes) in a real browser: Debian's Chromium, headless, driven by
tests/browser/check_notes.mjs (playwright-core) at a desktop and a phone size. Any console
error, failed request or CSP violation fails the test; over HTTPS, so does a request the browser
made over anything but HTTP/2 (its Resource Timing's nextHopProtocol)."""
import json
import os
import re
import shutil
import signal
import subprocess
import threading

import pytest

from hearthkit import BUILD, SOURCE, binary
from hearthkit.certs import make_test_pki
from hearthkit.ports import free_port
from hearthkit.wsgi import NOTES_APP_DIR, SANITIZED

BROWSER_DIR = os.path.join(SOURCE, "tests", "browser")

# What the browser exercises of our code, test_notes_site runs in the sanitizer build too; a
# second pass of Chromium there would only double the suite's longest minute.
pytestmark = pytest.mark.skipif(SANITIZED, reason="run in the normal build only")


def playwright_installed():
    """The playwright-core version in node_modules, or None."""
    try:
        with open(os.path.join(BROWSER_DIR, "node_modules", "playwright-core",
                               "package.json")) as f:
            return json.load(f)["version"]
    except OSError:
        return None


@pytest.fixture(scope="module")
def driver():
    """The driver's command line, its npm dependencies installed as package-lock.json pins
    them (a fresh clone has none, and a stale node_modules would test another version)."""
    with open(os.path.join(BROWSER_DIR, "package-lock.json")) as f:
        pinned = json.load(f)["packages"]["node_modules/playwright-core"]["version"]
    if playwright_installed() != pinned:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, check=True,
                       timeout=300)
    return ["node", os.path.join(BROWSER_DIR, "check_notes.mjs")]


def browse(driver, url, *flags):
    done = subprocess.run([*driver, url, *flags], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_visit(seen, https=False):
    """What must hold at every size: a clean page that fits, styled by the stylesheet, and
    the add (post/redirect/get) and delete flows through the real forms."""
    assert seen["problems"] == []
    assert "default-src 'self'" in seen["security"]["csp"]
    assert (seen["security"]["hsts"] is not None) == https
    layout = seen["layout"]
    assert layout["viewportMeta"] == "width=device-width, initial-scale=1"
    # the browser's defaults are an 8px body margin and a block header
    assert layout["bodyMargin"] == "0px" and layout["headerDisplay"] == "flex"
    assert layout["scrollWidth"] <= layout["innerWidth"]
    assert layout["overflowing"] == [] and layout["outOfCard"] == []
    assert seen["icons"]["linked"] > 0 and seen["icons"]["root"] > 0
    if https:  # over TLS the edge offers h2 first: the page and every asset came over it
        assert {"/", "/static/style.css", "/favicon.ico"} <= set(seen["protocols"])
        assert set(seen["protocols"].values()) == {"h2"}, seen["protocols"]
    assert seen["added"]["count"] == 1
    assert seen["added"]["body"] == "typed in Chromium\n\nattached from the browser"
    assert seen["leftAfterDelete"] == 0
    nav = seen["navigations"]
    assert nav[:3] == ["GET / 200", "POST /notes 303", "GET / 200"]
    assert re.fullmatch(r"POST /notes/\d+/delete 303", nav[3]) and nav[4:] == ["GET / 200"]


def test_site_in_chromium_at_desktop_and_phone_sizes(notes_server, tmp_path, driver):
    port = notes_server(tmp_path / "notes.db")
    seen = browse(driver, f"http://127.0.0.1:{port}")
    check_visit(seen["desktop"])
    check_visit(seen["phone"])
    desktop, phone = seen["desktop"]["layout"], seen["phone"]["layout"]
    assert desktop["innerWidth"] == 1280 and desktop["mainWidth"] < 800  # a centred column
    # without the viewport meta a phone lays the page out 980px wide
    assert phone["innerWidth"] == 390 and phone["mainWidth"] == 390
    # the phone rule of the stylesheet: a full-width submit button
    assert phone["submitWidth"] > 300 > desktop["submitWidth"]


def test_the_demo_in_chromium_trusting_pebbles_root(short_tmp, driver):
    """./demo as a user runs it: Pebble, then the whole stack serving the Flask site with a
    certificate certd got from Pebble. Chromium, given Pebble's root as the demo prints it (and
    only for this run: a throwaway NSS database), loads the page and its assets over h2 at both
    sizes, adds and deletes a note; without the root it refuses the certificate. Ctrl-C stops it
    all."""
    https = free_port()
    env = dict(os.environ, HEARTH_BUILD=os.path.abspath(BUILD), TMPDIR=str(short_tmp),
               HEARTH_DEMO_HTTP_PORT=str(free_port()), HEARTH_DEMO_HTTPS_PORT=str(https))
    demo = subprocess.Popen([os.path.join(SOURCE, "demo")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out = read_demo_until(demo, "Ctrl-C stops everything", timeout=90)
        url = f"https://notes.localhost:{https}/"
        root = str(short_tmp / "hearth-demo-pebble-root.pem")
        assert f"--ca {root}" in out
        seen = browse(driver, url, "--ca", root)
        check_visit(seen["desktop"], https=True)
        check_visit(seen["phone"], https=True)
        refused = subprocess.run([*driver, url], capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "ERR_CERT_AUTHORITY_INVALID" in refused.stderr
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        rest, _ = demo.communicate(timeout=30)
    assert demo.returncode == 130, rest


def read_demo_until(demo, marker, timeout):
    """The demo's output up to the line holding marker; fails with the output so far if the
    demo exits or takes longer than timeout."""
    out = []
    timer = threading.Timer(timeout, demo.kill)
    timer.start()
    try:
        for line in demo.stdout:
            out.append(line)
            if marker in line:
                return "".join(out)
    finally:
        timer.cancel()
    raise AssertionError("the demo ended before it was ready:\n" + "".join(out))


def test_behind_the_edge_over_https(notes_server, procs, tmp_path, driver):
    """The demo's layout: hearth's edge terminates TLS, serves /static/ from the package's
    static folder itself and passes the rest to the WSGI server, which sees scheme https
    (X-Forwarded-Proto) and so sends HSTS."""
    app_port = notes_server(tmp_path / "notes.db")
    pki = make_test_pki(tmp_path / "pki", "DNS:notes.localhost")
    # the edge's copy of the static folder has one file more, to tell who served /static/
    static = shutil.copytree(os.path.join(NOTES_APP_DIR, "notes", "static"), tmp_path / "static")
    (static / "edge.txt").write_text("from the edge's folder\n")
    https = free_port()
    procs.start_serving([
        binary("edge", "edge"), "--workers", "1", "--https", f"127.0.0.1:{https}",
        "--server-name", "notes.localhost", "--cert", str(pki / "cert.pem"),
        "--key", str(pki / "key.pem"), "--static", f"/static/={static}",
        "--upstream", f"127.0.0.1:{app_port}"], [https], name="edge")
    url = f"https://notes.localhost:{https}"
    seen = browse(driver, url, "--ca", str(pki / "ca.pem"))
    check_visit(seen["desktop"], https=True)
    check_visit(seen["phone"], https=True)
    marker = subprocess.run(["curl", "-sSf", "--cacert", str(pki / "ca.pem"), "--resolve",
                             f"notes.localhost:{https}:127.0.0.1", f"{url}/static/edge.txt"],
                            capture_output=True, text=True, timeout=10)
    assert marker.stdout == "from the edge's folder\n", marker.stderr
