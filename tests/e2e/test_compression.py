"""The edge's on-the-fly compression (edge/compress.c): proxied responses, static files and a
streamed upstream answer, in zstd, br and gzip, decoded by curl, Python's http.client, zlib,
brotli and the zstd tool and compared with the original bytes; the responses that must go out
as they are (ranges, no-transform, already encoded, 204/304, small, images, HEAD, HTTP/1.0,
clients that take no coding); the per-site settings; and a 200 MB proxied JSON answer that
leaves the worker's memory where it was."""
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import zlib

import pytest

from hearthkit import binary
from hearthkit.ports import free_port
from hearthkit.procs import rss_kib

EDGE = binary("edge", "edge")

try:
    import brotli
except ImportError:  # Debian's python3-brotli (tools/debian-packages.txt); else the CLI
    brotli = None

CODINGS = ("zstd", "br", "gzip")


def decode(coding, data):
    if coding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if coding == "br" and brotli:
        return brotli.decompress(data)
    tool = {"br": "brotli", "zstd": "zstd"}[coding]
    if not shutil.which(tool):
        pytest.skip(f"no {tool} to decode with")
    return subprocess.run([tool, "-dc"], input=data, capture_output=True, check=True).stdout


# ---------------------------------------------------------------------------------------------
# a small upstream application


def json_body(n):
    return json.dumps([{"id": i, "name": f"user {i}", "email": f"user{i}@example.com",
                        "roles": ["reader", "writer"][: 1 + i % 2]} for i in range(n)]).encode()


JSON = json_body(400)
LARGE = json_body(6000)  # longer than the edge gathers for one-call gzip: streamed through zlib
SMALL = b'{"ok": true}'
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
STREAM_FIRST = b"event: one\ndata: " + b"a" * 2000 + b"\n\n"
STREAM_REST = b"event: two\ndata: " + b"b" * 2000 + b"\n\n"
BIG_BLOCK = json_body(9000)[1:-1]  # about 0.8 MB of records, repeated for the large answer


def big_json_chunks(mb):
    """A JSON array of about mb MB, as the chunks the upstream writes."""
    count = max(1, mb * 1024 * 1024 // len(BIG_BLOCK))
    yield b"[" + BIG_BLOCK
    for _ in range(count - 1):
        yield b"," + BIG_BLOCK
    yield b"]"


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class App(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            target = line.split()[1].decode()
            self.accept_encoding = ""
            while (field := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = field.decode("latin-1").partition(":")
                if name.lower() == "accept-encoding":
                    self.accept_encoding = value.strip()
            if not self.route(target):
                return

    def send(self, status, body, *fields):
        head = [f"HTTP/1.1 {status} X"] + list(fields)
        if status not in (204, 304):
            head.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return True

    def chunked(self, pieces, *fields):
        head = ["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"] + list(fields)
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for p in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        return True

    def route(self, target):
        srv = self.server
        if target == "/json":
            return self.send(200, JSON, "Content-Type: application/json; charset=utf-8",
                             'ETag: "v1"', "Vary: Cookie")
        if target == "/large":
            return self.send(200, LARGE, "Content-Type: application/json")
        if target == "/truncated":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(JSON) + JSON[:len(JSON) // 2])
            return False
        if target == "/ae":
            # a page that says what the browser asked for
            body = (f"<!doctype html><title>ae</title><p id=ae>{self.accept_encoding}</p>"
                    + "<p>filler</p>" * 200).encode()
            return self.send(200, body, "Content-Type: text/html; charset=utf-8")
        if target == "/small":
            return self.send(200, SMALL, "Content-Type: application/json")
        if target == "/png":
            return self.send(200, PNG, "Content-Type: image/png")
        if target == "/no-transform":
            return self.send(200, JSON, "Content-Type: application/json",
                             "Cache-Control: public, no-transform")
        if target == "/encoded":
            return self.send(200, gzip.compress(JSON), "Content-Type: application/json",
                             "Content-Encoding: gzip")
        if target == "/304":
            return self.send(304, b"", 'ETag: "v1"', "Content-Type: application/json")
        if target == "/204":
            return self.send(204, b"", "Content-Type: application/json")
        if target == "/stream":
            # the second event waits until the client has decoded the first: compression must
            # not hold a streamed answer back
            def pieces():
                yield STREAM_FIRST
                srv.first_seen = srv.go_on.wait(5)
                yield STREAM_REST
            return self.chunked(pieces(), "Content-Type: text/event-stream")
        if target.startswith("/big?mb="):
            return self.chunked(big_json_chunks(int(target.split("=")[1])),
                                "Content-Type: application/json")
        return self.send(404, b"no route", "Content-Type: text/plain")


@pytest.fixture
def app(tmp_path):
    path = str(tmp_path / "app.sock")
    srv = UnixServer(path, App)
    srv.go_on = threading.Event()
    srv.first_seen = None
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


# ---------------------------------------------------------------------------------------------
# the edge


PAGE = ("<p>hearth compresses what it serves.</p>\n" * 300).encode()


@pytest.fixture
def www(tmp_path):
    d = tmp_path / "www"
    d.mkdir()
    (d / "page.html").write_bytes(PAGE)
    (d / "data.json").write_bytes(JSON)
    # a precompressed sibling is served as it is, never compressed again
    (d / "pre.txt").write_bytes(PAGE)
    (d / "pre.txt.br").write_bytes(b"precompressed bytes stand in for brotli")
    return d


def start_edge(procs, tmp_path, app, www, extra_sites="", edge_compression="{enabled: true}",
               env=None, edge_extra=""):
    port = free_port()
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"""
state_dir: {tmp_path}/state
run_dir: {tmp_path}/run
edge:
  workers: 1
  http: ["127.0.0.1:{port}"]
  https: []
  compression: {edge_compression}
{edge_extra}
sites:
  - name: localhost
    tls: off
    static: [{{prefix: /files/, root: {www}}}]
    upstreams: ["unix:{app.server_address}"]
{extra_sites}""")
    p = procs.start_serving([EDGE, "--config", str(cfg)], [port], name="edge", env=env)
    p.port = port
    return p


def get(edge, target, headers=None, method="GET", host="localhost"):
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=20)
    conn.request(method, target, headers={"Host": host, **(headers or {})})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r, body


def curl(edge, target, *args):
    r = subprocess.run(["curl", "-s", "--max-time", "30", *args,
                        f"http://127.0.0.1:{edge.port}{target}"], capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def curl_head_and_body(edge, target, *args):
    out = curl(edge, target, "-D", "-", *args)
    head, _, body = out.partition(b"\r\n\r\n")
    fields = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        fields.setdefault(k.strip().lower(), []).append(v.strip())
    return fields, body


def test_proxied_json_in_each_coding_decodes_to_the_original(procs, tmp_path, app, www):
    e = start_edge(procs, tmp_path, app, www)
    for coding in CODINGS:
        r, body = get(e, "/json", {"Accept-Encoding": coding})
        assert r.status == 200
        assert r.getheader("Content-Encoding") == coding
        assert r.getheader("Content-Length") is None
        assert r.getheader("Transfer-Encoding") == "chunked"
        # the upstream's Vary is kept and Accept-Encoding joins it; its strong ETag turns weak
        assert r.getheader("Vary") == "Cookie, Accept-Encoding"
        assert r.getheader("ETag") == 'W/"v1"'
        assert len(body) < len(JSON) / 4
        assert decode(coding, body) == JSON
        # curl, asked for the coding only, and decoding it itself
        fields, raw = curl_head_and_body(e, "/json", "-H", f"Accept-Encoding: {coding}")
        assert fields["content-encoding"] == [coding]
        assert decode(coding, raw) == JSON
        r, body = get(e, "/large", {"Accept-Encoding": coding})
        assert r.getheader("Content-Encoding") == coding and decode(coding, body) == LARGE
        # an upstream that stops short: the client must not take the answer for complete
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Accept-Encoding: {coding}",
                               f"http://127.0.0.1:{e.port}/truncated"])
        assert done.returncode in (18, 52, 56), done.returncode  # cut short, empty, reset
    # curl --compressed offers all it can decode, and zstd wins the tie
    fields, _ = curl_head_and_body(e, "/json", "--compressed")
    assert fields["content-encoding"] == ["zstd"]
    assert curl(e, "/json", "--compressed") == JSON


def test_static_file_compressed_unless_a_precompressed_sibling_exists(procs, tmp_path, app, www):
    e = start_edge(procs, tmp_path, app, www)
    for coding in CODINGS:
        r, body = get(e, "/files/page.html", {"Accept-Encoding": coding})
        assert r.getheader("Content-Encoding") == coding
        assert r.getheader("Vary") == "Accept-Encoding"  # static's own, not said twice
        assert r.getheader("ETag").startswith('W/"')
        assert r.getheader("Accept-Ranges") is None  # ranges are of the uncompressed file
        assert decode(coding, body) == PAGE
    assert curl(e, "/files/data.json", "--compressed") == JSON
    # the sibling wins over compressing on the fly, and its bytes go out untouched
    r, body = get(e, "/files/pre.txt", {"Accept-Encoding": "zstd, br, gzip"})
    assert r.getheader("Content-Encoding") == "br"
    assert body == (www / "pre.txt.br").read_bytes()
    # a client that takes no coding gets the file with its length and strong ETag
    r, body = get(e, "/files/page.html")
    assert r.getheader("Content-Encoding") is None
    assert r.getheader("Content-Length") == str(len(PAGE)) and body == PAGE
    assert not r.getheader("ETag").startswith("W/")
    assert r.getheader("Accept-Ranges") == "bytes"


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_streamed_upstream_answer_goes_out_as_it_comes(procs, tmp_path, app, www, coding):
    if coding == "br" and not brotli:
        pytest.skip("python3-brotli is not installed")
    e = start_edge(procs, tmp_path, app, www)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS) if coding == "gzip" else brotli.Decompressor()
    step = d.decompress if coding == "gzip" else d.process
    conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
    conn.request("GET", "/stream", headers={"Accept-Encoding": coding})
    r = conn.getresponse()
    assert r.getheader("Content-Encoding") == coding
    got = b""
    while len(got) < len(STREAM_FIRST):
        piece = r.read1(65536)
        assert piece, "the answer ended before its first event"
        got += step(piece)
    assert got == STREAM_FIRST
    app.go_on.set()
    got += step(r.read())
    conn.close()
    assert got == STREAM_FIRST + STREAM_REST
    assert app.first_seen is True  # the first event came through before the upstream went on


@pytest.mark.parametrize("target,headers,why", [
    ("/json", {"Range": "bytes=0-9"}, "a range request"),
    ("/files/page.html", {"Range": "bytes=0-9"}, "a range of a file (206)"),
    ("/no-transform", {}, "Cache-Control: no-transform"),
    ("/encoded", {}, "already encoded"),
    ("/small", {}, "shorter than min_length"),
    ("/png", {}, "not a listed type"),
    ("/json", {"Accept-Encoding": "identity;q=0"}, "no coding taken: identity after all"),
    ("/json", {"Accept-Encoding": "gzip;q=0, br;q=0, zstd;q=0"}, "every coding refused"),
    ("/json", {"Accept-Encoding": "identity, gzip;q=0.5"}, "identity preferred"),
    ("/json", {"Accept-Encoding": "deflate"}, "no coding the edge has"),
])
def test_answers_that_go_out_as_they_are(procs, tmp_path, app, www, target, headers, why):
    e = start_edge(procs, tmp_path, app, www)
    headers = {"Accept-Encoding": "zstd, br, gzip", **headers}
    r, body = get(e, target, headers)
    assert r.getheader("Content-Encoding") in (None, "gzip" if target == "/encoded" else None), why
    assert r.getheader("Content-Length") is not None, why
    if target == "/encoded":
        assert gzip.decompress(body) == JSON  # passed through, not compressed twice
    elif "Range" in headers and target.startswith("/files/"):
        assert r.status == 206 and body == PAGE[:10]
    elif target == "/json":
        assert body == JSON
        assert r.getheader("ETag") == '"v1"'
        # a client that would have got a coding but for its own choice: caches must know
        if "Range" not in headers:
            assert r.getheader("Vary") == "Cookie, Accept-Encoding"


def test_bodyless_answers_and_old_clients_are_left_alone(procs, tmp_path, app, www):
    e = start_edge(procs, tmp_path, app, www)
    ae = {"Accept-Encoding": "gzip"}
    for target, status in (("/304", 304), ("/204", 204)):
        r, body = get(e, target, ae)
        assert r.status == status and body == b""
        assert r.getheader("Content-Encoding") is None
        assert r.getheader("Transfer-Encoding") is None
    r, _ = get(e, "/304", ae)
    assert r.getheader("ETag") == '"v1"'
    # HEAD: the answer a GET would get, less the body that would have been compressed
    r, body = get(e, "/files/page.html", ae, method="HEAD")
    assert r.getheader("Content-Encoding") is None and body == b""
    assert r.getheader("Content-Length") == str(len(PAGE))
    # HTTP/1.0: a compressed body's length is unknown, and only a close could end it
    with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
        s.sendall(b"GET /json HTTP/1.0\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n")
        got = b""
        while piece := s.recv(65536):
            got += piece
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"Content-Encoding" not in head and body == JSON


def test_settings_per_site_and_off_by_default(procs, tmp_path, app, www):
    extra = f"""  - name: plain.test
    tls: off
    compression: {{enabled: false}}
    upstreams: ["unix:{app.server_address}"]
  - name: text.test
    tls: off
    compression: {{types: [text/plain, +json], min_length: 0, gzip_level: 1}}
    static: [{{prefix: /, root: {www}}}]
"""
    e = start_edge(procs, tmp_path, app, www, extra_sites=extra)
    ae = {"Accept-Encoding": "gzip"}
    r, body = get(e, "/json", ae, host="plain.test")
    assert r.getheader("Content-Encoding") is None and body == JSON
    # text.test keeps the edge's enabled: true and sets its own types and level
    r, body = get(e, "/pre.txt", {"Accept-Encoding": "gzip"}, host="text.test")
    assert r.getheader("Content-Encoding") == "gzip" and decode("gzip", body) == PAGE
    assert body[8] == 4  # gzip's XFL: 4 is "fastest", what level 1 writes
    r, body = get(e, "/data.json", ae, host="text.test")
    assert r.getheader("Content-Encoding") is None and body == JSON
    procs.stop_all()
    # no compression: section at all: nothing is compressed
    e = start_edge(procs, tmp_path, app, www, edge_compression="{}")
    r, body = get(e, "/json", ae)
    assert r.getheader("Content-Encoding") is None and body == JSON
    assert r.getheader("Vary") == "Cookie"


def test_config_refuses_a_malformed_type_or_level(tmp_path):
    for bad, words in (("types: [json]", "media type"), ("gzip_level: 10", "from 1 to 9"),
                       ("zstd_level: 0", "from 1 to 19")):
        cfg = tmp_path / "hearth.yaml"
        cfg.write_text(f"""
edge:
  http: ["127.0.0.1:{free_port()}"]
  https: []
  compression: {{{bad}}}
""")
        r = subprocess.run([EDGE, "--config", str(cfg), "--check"], capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        assert "edge.compression." in r.stderr and words in r.stderr, r.stderr


# Under ASan freed memory sits in a quarantine that counts as resident: keep it small here.
SMALL_QUARANTINE = {"ASAN_OPTIONS": ":".join(
    x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=1") if x)}


def test_200mb_proxied_json_compressed_with_bounded_memory(procs, tmp_path, app, www):
    if not shutil.which("zstd"):
        pytest.skip("no zstd to decode with")
    e = start_edge(procs, tmp_path, app, www, env=SMALL_QUARANTINE)
    get(e, "/json", {"Accept-Encoding": "zstd"})  # the encoder's first allocation made
    base = rss_kib(e.pid)
    want = hashlib.sha256()
    for chunk in big_json_chunks(200):
        want.update(chunk)
    r = subprocess.run(
        f"curl -s --max-time 120 -H 'Accept-Encoding: zstd' -D {tmp_path}/head "
        f"http://127.0.0.1:{e.port}/big?mb=200 | zstd -dc | sha256sum",
        shell=True, capture_output=True, text=True)
    assert r.stdout.split()[0] == want.hexdigest(), r.stderr
    assert "content-encoding: zstd" in (tmp_path / "head").read_text().lower()
    peak = rss_kib(e.pid, "VmHWM")
    assert peak - base < 32 * 1024, (base, peak)


def test_compress_flag_of_a_site_from_the_command_line(procs, app):
    port = free_port()
    e = procs.start_serving([EDGE, "--http", f"127.0.0.1:{port}", "--workers", "1",
                             "--server-name", "localhost", "--upstream",
                             f"unix:{app.server_address}", "--compress"], [port], name="edge")
    e.port = port
    r, body = get(e, "/json", {"Accept-Encoding": "br"})
    assert r.getheader("Content-Encoding") == "br" and decode("br", body) == JSON


def chromium_dom(url):
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--dump-dom", url], capture_output=True, text=True, timeout=60)
    return done.stdout


@pytest.mark.skipif(not shutil.which("chromium"), reason="no chromium")
def test_chromium_decodes_what_it_gets(procs, tmp_path, app, www):
    """Debian's Chromium, headless, loads a proxied page and a static one: the DOM is whole,
    and the access log shows far fewer bytes sent than the pages hold."""
    log = tmp_path / "access.log"
    e = start_edge(procs, tmp_path, app, www,
                   edge_extra=f"  access_log: {log}\n  access_log_format: json")
    filler = "<p>filler</p>" * 200
    dom = chromium_dom(f"http://127.0.0.1:{e.port}/ae")
    assert filler in dom, dom[:2000]
    asked = re.search(r'<p id="ae">([^<]*)</p>', dom)
    assert asked and "gzip" in asked.group(1), dom[:500]
    dom = chromium_dom(f"http://127.0.0.1:{e.port}/files/page.html")
    assert PAGE.decode().strip() in dom, dom[:2000]
    sent = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        sent[entry["target"]] = entry["body_bytes_sent"]
    assert 0 < sent["/ae"] < len(filler) / 4, sent
    assert 0 < sent["/files/page.html"] < len(PAGE) / 4, sent
