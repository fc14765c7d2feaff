"""The edge's plain-HTTP answers (redirects to HTTPS, ACME challenges) and its static files:
MIME types and directories, validators and 304s, ranges, precompressed siblings, Cache-Control,
traversal attempts, and a site without TLS served with sendfile."""
import http.client
import json
import os

from hearthkit.clients import client_ctx, curl, https_get, raw, status_of


def test_redirect_get_and_head_301_with_path_and_query(start_edge):
    e = start_edge()
    for method in ("GET", "HEAD"):
        conn = http.client.HTTPConnection("127.0.0.1", e.http, timeout=5)
        conn.request(method, "/some/path?x=1&y=2", headers={"Host": "a.test"})
        r = conn.getresponse()
        r.read()
        assert r.status == 301
        assert r.getheader("Location") == f"https://a.test:{e.https}/some/path?x=1&y=2"


def test_redirect_other_methods_308_and_host_header_ignored(start_edge):
    e = start_edge()
    resp = raw(e.http, b"POST /form?q=1 HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 3"
                       b"\r\n\r\nabc")
    assert status_of(resp) == 308
    assert f"Location: https://a.test:{e.https}/form?q=1\r\n".encode() in resp
    assert b"evil" not in resp


def test_acme_challenge_served_and_token_charset_checked(start_edge):
    e = start_edge()
    r = curl(f"http://127.0.0.1:{e.http}/.well-known/acme-challenge/tok_EN-123", "-i")
    assert b" 200 " in r.stdout.split(b"\r\n")[0]
    assert r.stdout.endswith(b"tok_EN-123.thumbprint")
    for bad in [b"/.well-known/acme-challenge/missing", b"/.well-known/acme-challenge/..%2f..%2foutside.txt",
                b"/.well-known/acme-challenge/../../outside.txt", b"/.well-known/acme-challenge/a.b",
                b"/.well-known/acme-challenge/"]:
        resp = raw(e.http, b"GET " + bad + b" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        assert status_of(resp) in (404, 400, 301), (bad, resp)
        assert b"NOT-A-CHALLENGE" not in resp


def test_static_index_mime_and_directories(start_edge, pki):
    e = start_edge()
    r, body = https_get(e, pki["ca"], "/")
    assert r.status == 200 and body == b"<h1>home</h1>\n"
    assert r.getheader("Content-Type") == "text/html; charset=utf-8"
    for path, mime in [("/style.css", "text/css"), ("/app.js", "text/javascript"),
                       ("/data.json", "application/json"), ("/logo.png", "image/png"),
                       ("/static/digits.txt", "text/plain")]:
        r, _ = https_get(e, pki["ca"], path)
        assert r.status == 200 and r.getheader("Content-Type").startswith(mime), path
    r, body = https_get(e, pki["ca"], "/sub/")
    assert body == b"<h1>sub</h1>\n"
    r, _ = https_get(e, pki["ca"], "/sub?a=1")
    assert r.status == 301 and r.getheader("Location") == "/sub/?a=1"
    r, _ = https_get(e, pki["ca"], "/nope.txt")
    assert r.status == 404
    r, body = https_get(e, pki["ca"], "/space%20name.txt")
    assert r.status == 200 and body == b"spaced\n"
    r, body = https_get(e, pki["ca"], "/inside-link.css")
    assert r.status == 200
    r, _ = https_get(e, pki["ca"], "/style.css", method="POST", body=b"x")
    assert r.status == 405


def test_static_etag_last_modified_304(start_edge, pki):
    e = start_edge()
    r, _ = https_get(e, pki["ca"], "/style.css")
    etag, lm = r.getheader("ETag"), r.getheader("Last-Modified")
    assert etag and lm
    r, body = https_get(e, pki["ca"], "/style.css", headers={"If-None-Match": etag})
    assert r.status == 304 and body == b"" and r.getheader("ETag") == etag
    r, _ = https_get(e, pki["ca"], "/style.css", headers={"If-None-Match": '"other"'})
    assert r.status == 200
    r, _ = https_get(e, pki["ca"], "/style.css", headers={"If-Modified-Since": lm})
    assert r.status == 304
    r, _ = https_get(e, pki["ca"], "/style.css",
                     headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status == 200


def test_static_ranges_206_and_416(start_edge, pki):
    e = start_edge()
    digits = b"0123456789" * 10
    r, body = https_get(e, pki["ca"], "/digits.txt", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and body == digits[10:20]
    assert r.getheader("Content-Range") == "bytes 10-19/100"
    r, body = https_get(e, pki["ca"], "/digits.txt", headers={"Range": "bytes=-5"})
    assert r.status == 206 and body == digits[-5:]
    r, body = https_get(e, pki["ca"], "/digits.txt", headers={"Range": "bytes=95-"})
    assert r.status == 206 and body == digits[95:]
    r, body = https_get(e, pki["ca"], "/digits.txt", headers={"Range": "bytes=90-1000"})
    assert r.status == 206 and body == digits[90:]
    r, _ = https_get(e, pki["ca"], "/digits.txt", headers={"Range": "bytes=100-"})
    assert r.status == 416 and r.getheader("Content-Range") == "bytes */100"
    r, body = https_get(e, pki["ca"], "/digits.txt", headers={"Range": "bytes=0-1,5-6"})
    assert r.status == 200 and body == digits
    # plain HTTP is all redirect, so sendfile ranges are checked on the plain static path below


def test_static_precompressed_siblings_and_vary(start_edge, pki):
    e = start_edge()
    r, body = https_get(e, pki["ca"], "/page.html", headers={"Accept-Encoding": "gzip, br"})
    assert body == b"BR-VARIANT" and r.getheader("Content-Encoding") == "br"
    assert r.getheader("Vary") == "Accept-Encoding"
    r, body = https_get(e, pki["ca"], "/page.html", headers={"Accept-Encoding": "gzip"})
    assert body == b"GZ-VARIANT" and r.getheader("Content-Encoding") == "gzip"
    r, body = https_get(e, pki["ca"], "/page.html", headers={"Accept-Encoding": "br;q=0, gzip;q=0"})
    assert body.startswith(b"plain page") and r.getheader("Content-Encoding") is None
    assert r.getheader("Vary") == "Accept-Encoding"
    r, body = https_get(e, pki["ca"], "/page.html")
    assert body.startswith(b"plain page")


def test_static_cache_control(start_edge, pki, site):
    sites = ["--server-name", "a.test", "--cert", pki["a_ec"][0], "--key", pki["a_ec"][1],
             "--static", f"/assets/={site['www']}", "--cache-control", "public, max-age=3600"]
    e = start_edge(sites=sites)
    r, _ = https_get(e, pki["ca"], "/assets/style.css")
    assert r.status == 200 and r.getheader("Cache-Control") == "public, max-age=3600"


TRAVERSALS = [
    b"/../secret.txt", b"/%2e%2e/secret.txt", b"/%2E%2E/secret.txt", b"/..%2fsecret.txt",
    b"/%2e%2e%2fsecret.txt", b"/sub/../../secret.txt", b"/sub/%2e%2e/%2e%2e/secret.txt",
    b"/..\\secret.txt", b"/%5c..%5csecret.txt", b"/sub%2f..%2f..%2fsecret.txt",
    b"/escape.txt", b"/style.css%00.png", b"/%00", b"/./style.css/../../secret.txt",
    b"/static/../../secret.txt", b"//../secret.txt", b"/%252e%252e/secret.txt",
    b"/..;/secret.txt", b"/sub/..", b"/%c0%ae%c0%ae/secret.txt",
]


def test_static_traversal_attempts_refused(start_edge, pki):
    e = start_edge()
    tls = client_ctx(pki["ca"])
    for t in TRAVERSALS:
        resp = raw(e.https, b"GET " + t + b" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                   tls=tls)
        assert status_of(resp) in (400, 403, 404), (t, resp[:80])
        assert b"TOP-SECRET" not in resp, t
    assert e.proc.poll() is None


def test_plain_site_without_tls_serves_static_with_sendfile_and_proxies(
        start_edge, upstream, tmp_path):
    www = tmp_path / "plain"
    www.mkdir()
    blob = os.urandom(1 << 20) * 20
    (www / "blob.bin").write_bytes(blob)
    sites = ["--server-name", "plain.test", "--static", f"/files/={www}",
             "--upstream", f"unix:{upstream}"]
    e = start_edge(sites=sites, https=False)
    url = f"http://127.0.0.1:{e.http}"
    r = curl("-H", "Host: plain.test", "-o", str(tmp_path / "out.bin"), "-w", "%{http_code}",
             f"{url}/files/blob.bin")
    assert r.stdout == b"200"
    assert (tmp_path / "out.bin").read_bytes() == blob
    r = curl("-H", "Host: plain.test", "-r", "1000-1999", f"{url}/files/blob.bin")
    assert r.stdout == blob[1000:2000]
    r = curl("-H", "Host: plain.test", f"{url}/echo")
    h = {k.lower(): v for k, v in json.loads(r.stdout)["headers"]}
    assert h["x-forwarded-proto"] == "http"
    r = curl("-H", "Host: plain.test", f"{url}/.well-known/acme-challenge/tok_EN-123")
    assert r.stdout == b"tok_EN-123.thumbprint"
