"""bench/run --quick end to end: every row runs on both sides and lands in the table. Only
that the tool works is checked, never how fast anything is (timings are not behaviour)."""
import re
import subprocess

from hearthkit import BUILD, SOURCE

# (row number, label) of every line bench/run prints, in order
EXPECTED = [
    ("1", "1 KiB static, HTTP keep-alive"),
    ("1", "vs caddy"),
    ("2", "1 KiB static, HTTPS keep-alive"),
    ("2", "vs caddy"),
    ("3", "new TLS connection per request"),
    ("3", "vs caddy"),
    ("4", "1 MiB static, HTTPS (10 conns)"),
    ("4", "vs caddy"),
    ("5", "app hello, edge>appserver vs nginx>gunicorn"),
    ("6", "app hello, appserver vs gunicorn+flask"),
    ("7", "p50 latency at fixed rate (row 5)"),
    ("7", "p99 latency at fixed rate (row 5)"),
    ("8", "RSS growth, idle TLS conns"),
    ("8", "bytes per idle TLS connection"),
    ("9", "issuance wall time vs Certbot"),
    ("9", "issuance wall time vs lego"),
    ("9", "issuance peak RSS vs Certbot"),
    ("9", "issuance peak RSS vs lego"),
    ("10a", "failed requests, app server HUPs"),
    ("10b", "failed requests, certificate reloads"),
    ("11a", "Flask hello, appserver vs gunicorn sync"),
    ("11a", "Flask hello, appserver vs uwsgi"),
    ("11b", "Flask page, appserver vs gunicorn sync"),
    ("11b", "Flask page, appserver vs uwsgi"),
    ("11c", "Flask hello, edge>appserver vs nginx>gunicorn"),
    ("11d", "worker RSS, Flask page loaded"),
    ("11e", "failed requests, Flask app HUPs"),
    ("12a", "1 KiB static, h2 (50x10 streams)"),
    ("12a", "vs caddy"),
    ("12b", "1 MiB static, h2 (10 conns)"),
    ("12b", "vs caddy"),
    ("12c", "app hello over h2, each > appserver"),
    ("12c", "vs caddy"),
    ("12d", "RSS growth, idle h2 conns"),
    ("12d", "bytes per idle h2 connection"),
    ("15a", "100 KiB JSON gzip vs nginx gzip"),
    ("15a", "body bytes vs nginx gzip"),
    ("15a", "100 KiB JSON gzip vs caddy gzip"),
    ("15a", "body bytes vs caddy gzip"),
    ("15b", "100 KiB JSON br vs nginx gzip"),
    ("15b", "body bytes vs nginx gzip"),
    ("15c", "100 KiB JSON zstd vs caddy zstd"),
    ("15c", "body bytes vs caddy zstd"),
]
NUMBER = re.compile(r"^[\d,]+(\.\d+)?$")


def run_bench(*args):
    return subprocess.run([f"{SOURCE}/bench/run", "--build", BUILD] + list(args),
                          capture_output=True, text=True, timeout=400)


def table_lines(stdout):
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in stdout.splitlines() if re.match(r"^\| \d", line)]


def test_quick_run_fills_every_row_for_both_sides():
    done = run_bench("--quick")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    lines = table_lines(done.stdout)
    assert [(cells[0], cells[1].strip()) for cells in lines] == EXPECTED, done.stdout
    for number, label, unit, ours, peer, theirs, ratio, better, ours_range, theirs_range \
            in lines:
        assert NUMBER.match(ours) and NUMBER.match(theirs), (label, ours, theirs)
        assert better in ("hearth", "peer", "even"), (label, better)
        assert ratio == "n/a" or float(ratio) >= 0, (label, ratio)
        assert ours_range.count("–") == 1 and theirs_range.count("–") == 1
    # throughput rows count real answers on both sides
    for cells in lines[:6]:
        assert float(cells[3].replace(",", "")) > 0 and float(cells[5].replace(",", "")) > 0
    assert "cores" in done.stdout and "round(s) per row" in done.stdout


def test_one_row_alone_and_unknown_row():
    done = run_bench("--quick", "--rows", "6")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert [cells[0] for cells in table_lines(done.stdout)] == ["6"]
    bad = run_bench("--quick", "--rows", "99")
    assert bad.returncode != 0 and "no row 99" in bad.stderr
