"""Real HTTP/2 clients against the server: curl --http2 and nghttp (nghttp2-client) fetch the
static files (whole, ranges, conditional) and POST to /echo, and must have negotiated h2."""
import re
import shutil
import subprocess

import pytest

TIMEOUT = 10  # a client process, not one frame: startup included


def run(argv, data=None):
    r = subprocess.run(argv, input=data, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, (argv, r.stderr.decode(errors="replace"))
    return r.stdout


# --- curl -------------------------------------------------------------------------------------

def curl(server, path, *args, data=None):
    """curl over h2 only; returns (http version, status, headers text, body)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    out = run(["curl", "--http2", "-sSk", "--resolve", f"localhost:{server.port}:127.0.0.1",
               "-D", "-", "-w", "\n%{http_version} %{http_code}", *args,
               f"https://localhost:{server.port}{path}"], data=data)
    out, _, tail = out.rpartition(b"\n")
    version, status = tail.decode().split()
    head, _, body = out.partition(b"\r\n\r\n")
    return version, int(status), head.decode().lower(), body


def test_curl_get(server):
    version, status, _, body = curl(server, "/1m.bin")
    assert (version, status) == ("2", 200)
    assert body == server.file("1m.bin")


def test_curl_head(server):
    version, status, head, body = curl(server, "/1k.html", "-I")
    assert (version, status, body.strip()) == ("2", 200, b"")  # -I and -D both print heads
    assert "content-length: 1024" in head


def test_curl_range(server):
    version, status, head, body = curl(server, "/1m.bin", "-r", "1000-1999")
    assert (version, status) == ("2", 206)
    assert "content-range: bytes 1000-1999/1048576" in head
    assert body == server.file("1m.bin")[1000:2000]


def test_curl_suffix_range(server):
    _, status, _, body = curl(server, "/1k.html", "-r", "-24")
    assert status == 206 and body == server.file("1k.html")[-24:]


def test_curl_if_none_match(server):
    _, _, head, _ = curl(server, "/1k.html")
    etag = re.search(r"^etag: (.*?)\r?$", head, re.M).group(1)
    version, status, _, body = curl(server, "/1k.html", "-H", f"If-None-Match: {etag}")
    assert (version, status, body) == ("2", 304, b"")


def test_curl_post(server):
    version, status, _, body = curl(server, "/echo", "--data-binary", "@-", data=b"x" * 70000)
    assert (version, status) == ("2", 200)
    assert body == b"x" * 70000


# --- nghttp -----------------------------------------------------------------------------------

def nghttp(server, *paths, opts=(), verbose=False):
    if shutil.which("nghttp") is None:
        pytest.skip("nghttp (nghttp2-client) is not installed")
    return run(["nghttp", *(["-v"] if verbose else []), *opts,
                *[f"https://127.0.0.1:{server.port}{p}" for p in paths]])


def statuses(verbose_output):
    return [int(s) for s in re.findall(rb":status: (\d+)", verbose_output)]


def test_nghttp_negotiates_h2(server):
    out = nghttp(server, "/index.html", opts=["-n"], verbose=True)
    assert b"The negotiated protocol: h2" in out
    assert statuses(out) == [200]


def test_nghttp_get(server):
    assert nghttp(server, "/1m.bin") == server.file("1m.bin")


def test_nghttp_several_streams(server):
    """Three requests multiplexed on nghttp's one connection."""
    out = nghttp(server, "/index.html", "/1k.html", "/1m.bin", opts=["-n"], verbose=True)
    assert sorted(statuses(out)) == [200, 200, 200]
    assert len(set(re.findall(rb"stream_id=(\d+)", out))) >= 3


def test_nghttp_range(server):
    out = nghttp(server, "/1k.html", opts=["-H", "range: bytes=0-9"], verbose=True)
    assert statuses(out) == [206]
    assert server.file("1k.html")[:10] in out


def test_nghttp_if_none_match(server):
    out = nghttp(server, "/1k.html", opts=["-n"], verbose=True)
    etag = re.search(rb"etag: (\S+)", out).group(1).decode()
    out = nghttp(server, "/1k.html", opts=["-n", "-H", f"if-none-match: {etag}"],
                 verbose=True)
    assert statuses(out) == [304]


def test_nghttp_post(server, tmp_path):
    body = tmp_path / "body"
    body.write_bytes(b"n" * 100000)
    assert nghttp(server, "/echo", opts=["-d", str(body)]) == b"n" * 100000
