"""Differential test of the WSGI bridge (issue 11): one Flask application
(tests/wsgi_apps/flask_site.py) served by Gunicorn (the reference, `-w 1`) and by hearth's
appserver at the same time; a deterministic list of a few hundred requests generated from a
seed goes to both, byte for byte the same, and the answers must be the same.

What is compared: the status, the headers as a multiset (names case-insensitive, values
exact) and the body with its framing removed. What is left out, and why:
- Date and Server: the clock and the server's name.
- Connection and Keep-Alive: each server's own connection handling (Gunicorn's sync worker
  closes every connection; the request says Connection: close anyway).
- Transfer-Encoding, and Content-Length when only one side sent one: one body may be framed
  by chunks on one side and by a length on the other, by design; the decoded bodies are
  compared instead, and both must be complete. When both sent Content-Length it is compared.
- The order of the methods in Allow: Werkzeug lists them from a set, whose order depends on
  each process's string hash seed; compared as a set.
Requests that differ by design are not generated (repeated header fields, joined with ", " by
hearth and "," by Gunicorn; field names with "_", which hearth drops; bodies over hearth's
--max-body-size; field values ending in whitespace, which is not part of the value (RFC 9110
5.5) and hearth strips while Gunicorn 20.1 keeps it): test_wsgi_environ.py covers the rules.

HEARTH_WSGI_SERVER=gunicorn puts Gunicorn on both sides, which checks that the requests and
the application are deterministic and the normalisations above sufficient."""
import concurrent.futures
import json
import random
import urllib.parse

import pytest

from hearthkit.clients import parse_responses
from hearthkit.wsgi import start_wsgi

HOST = "diff.test"
FRAMING = {"date", "server", "connection", "keep-alive", "transfer-encoding"}


class Req:
    def __init__(self, method, target, headers=(), body=None, chunks=None):
        self.method, self.target, self.headers = method, target, list(headers)
        self.body, self.chunks = body, chunks

    def wire(self):
        head = f"{self.method} {self.target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        if self.chunks is not None:
            head += "Transfer-Encoding: chunked\r\n"
            body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in self.chunks if c) + \
                b"0\r\n\r\n"
        elif self.body is not None:
            head += f"Content-Length: {len(self.body)}\r\n"
            body = self.body
        else:
            body = b""
        return head.encode("latin-1") + b"\r\n" + body

    def __repr__(self):
        size = len(self.body) if self.body is not None else \
            sum(map(len, self.chunks)) if self.chunks is not None else 0
        return f"{self.method} {self.target} {self.headers} ({size} bytes)"


WORDS = ["a", "b", "café", "naïve", "x y", "a+b", "100%", "/", "?", "&", "=", "#", "ü€", ""]
ODD_QUERIES = ["a=1&a=2&a=3", "a=%zz", "a=%", "a=%2", "a=+b", "a=%2B", "=b", "a=", "&&a=1&",
               "a=1;b=2", "a=%C3%A9", "a=%E9", "a=%00b", "a=1?b=2", "a[]=1&a[]=2", "A=1&a=2",
               "q=" + "%41" * 40]
ODD_PATHS = ["caf%C3%A9", "%E9t%E9", "a%20b", "a+b", "%2541", "a%2Fb", "x/y/z", "%F0%9F%94%A5",
             "~user", "a;b=c", "%7E"]


def rand_text(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))


def query(rng):
    pairs = [(rng.choice(["a", "b", "ü", "k k"]), rand_text(rng))
             for _ in range(rng.randint(0, 4))]
    return urllib.parse.urlencode(pairs)


def multipart(rng):
    boundary = "----diff%d" % rng.randrange(10 ** 9)
    parts = []
    for i in range(rng.randint(0, 2)):
        parts.append(f'Content-Disposition: form-data; name="field{i}"\r\n\r\n'
                     f"{rand_text(rng)}".encode())
    for i in range(rng.randint(1, 2)):
        name = rng.choice(["notes.txt", "résumé.pdf", "data.bin", "a b.csv"])
        data = rng.randbytes(rng.choice([0, 10, 5000, 200_000]))
        parts.append(f'Content-Disposition: form-data; name="file{i}"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data)
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary}"


def chunks_of(rng, data):
    out, i = [], 0
    while i < len(data):
        n = rng.choice([1, 7, 100, 4096, 65536, 300_000])
        out.append(data[i:i + n])
        i += n
    return out


def gen_echo(rng):
    headers = [("Accept", rng.choice(["*/*", "application/json", "text/html;q=0.9"]))]
    if rng.random() < 0.3:
        headers.append(("X-Probe", rand_text(rng).strip().encode().decode("latin-1") or "-"))
    if rng.random() < 0.2:
        headers.append(("X-Forwarded-Proto", "https"))
    q = query(rng) if rng.random() < 0.6 else rng.choice(ODD_QUERIES)
    method = rng.choice(["GET", "GET", "HEAD", "DELETE"])
    return Req(method, "/echo?" + q if q else "/echo", headers)


def gen_json(rng):
    if rng.random() < 0.2:
        return Req("POST", "/json", [("Content-Type", "application/json")],
                   rng.choice([b"{not json", b"", b"[1, 2", b"\xff\xfe"]))
    value = {rand_text(rng): [rng.randint(-10 ** 6, 10 ** 6), rand_text(rng), None, True,
                              rng.random()] for _ in range(rng.randint(0, 5))}
    return Req("POST", "/json", [("Content-Type", "application/json")],
               json.dumps(value, ensure_ascii=rng.random() < 0.5).encode())


def gen_form(rng):
    return Req("POST", "/form?" + query(rng),
               [("Content-Type", "application/x-www-form-urlencoded")], query(rng).encode())


def gen_upload(rng):
    body, ctype = multipart(rng)
    return Req("POST", "/upload", [("Content-Type", ctype)], body)


def gen_body(rng):
    data = rng.randbytes(rng.choice([0, 1, 1000, 70_000, 1_000_000 if rng.random() < 0.1 else 3]))
    method = rng.choice(["POST", "PUT"])
    if rng.random() < 0.5:
        return Req(method, "/body", [("Content-Type", "application/octet-stream")],
                   chunks=chunks_of(rng, data))
    return Req(method, "/body", [("Content-Type", "application/octet-stream")], data)


def gen_cookies(rng):
    if rng.random() < 0.5:
        pairs = [(rng.choice(["sid", "theme", "lang"]), rng.choice(["abc", "dark", "fr-CH", "1"]))
                 for _ in range(rng.randint(1, 3))]
        return Req("GET", "/cookies/set?" + urllib.parse.urlencode(pairs))
    cookie = "; ".join(f"{k}={v}" for k, v in [("sid", "s3cr3t"), ("theme", "dark"),
                                               ("q", '"quoted"')][:rng.randint(1, 3)])
    return Req("GET", "/cookies", [("Cookie", cookie)])


def gen_redirect(rng):
    code = rng.choice([301, 302, 303, 307, 308])
    ext = "?external=1" if rng.random() < 0.5 else ""
    headers = [("X-Forwarded-Proto", "https")] if rng.random() < 0.3 else []
    return Req(rng.choice(["GET", "HEAD"]), f"/redirect/{code}{ext}", headers)


def gen_error(rng):
    return rng.choice([Req("GET", f"/abort/{rng.choice([400, 403, 404, 410])}"),
                       Req("GET", "/boom"), Req("GET", "/no/such/page"),
                       Req("POST", "/stream", body=b""), Req("GET", "/abort/notanumber")])


def gen_path(rng):
    return Req(rng.choice(["GET", "HEAD"]),
               "/u/" + "/".join(rng.choice(ODD_PATHS) for _ in range(rng.randint(1, 3))))


def gen_stream(rng):
    return Req(rng.choice(["GET", "GET", "HEAD"]), f"/stream?n={rng.randint(0, 40)}")


def gen_index(rng):
    return Req(rng.choice(["GET", "HEAD"]), rng.choice(["/", "/?x=1", "//", "/%2F"]))


GENERATORS = [gen_echo, gen_json, gen_form, gen_upload, gen_body, gen_cookies, gen_redirect,
              gen_error, gen_path, gen_stream, gen_index]


def generated_requests(n=300, seed=3333):
    """n requests from seed: every generator's request a few times, then at random."""
    rng = random.Random(seed)
    reqs = [g(rng) for g in GENERATORS for _ in range(3)]
    reqs += [rng.choice(GENERATORS)(rng) for _ in range(n - len(reqs))]
    # the cases named in the issue that chance might miss: 1 MB bodies, plain and chunked
    big = rng.randbytes(1_000_000)
    reqs += [Req("POST", "/body", [("Content-Type", "application/octet-stream")], big),
             Req("POST", "/body", [("Content-Type", "application/octet-stream")],
                 chunks=chunks_of(rng, big))]
    return reqs


def normalised(r, other):
    """r's status, headers (as a sorted list: a multiset) and body, framing left out."""
    drop = set(FRAMING)
    if r.framing != "content-length" or other.framing != "content-length":
        drop.add("content-length")
    headers = sorted((k.lower(), ", ".join(sorted(v.split(", "))) if k.lower() == "allow" else v)
                     for k, v in r.headers if k.lower() not in drop)
    return r.status, headers, r.body


def answers(server, reqs):
    out = []
    for req in reqs:
        (r,) = parse_responses(server.exchange(req.wire(), timeout=20), [req.method])
        out.append(r)
    return out


@pytest.fixture
def sides(procs, tmp_path):
    reference = start_wsgi(procs, tmp_path, "flask_site:app", kind="gunicorn")
    under_test = start_wsgi(procs, tmp_path, "flask_site:app")
    return reference, under_test


def test_same_answers_as_gunicorn(sides):
    reqs = generated_requests()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ref, got = pool.map(lambda s: answers(s, reqs), sides)
    differences = []
    for req, a, b in zip(reqs, ref, got):
        if not (a.complete and b.complete) or normalised(a, b) != normalised(b, a):
            differences.append(f"{req}\n  gunicorn: {a}\n  {sides[1].kind}: {b}")
    assert not differences, f"{len(differences)} of {len(reqs)} answers differ:\n" + \
        "\n".join(differences)
    # the list covered what it is meant to: every status class and framing
    statuses = {r.status for r in ref}
    assert {200, 201, 301, 302, 303, 307, 308, 400, 404, 405, 500} <= statuses, statuses
    assert {"chunked", "content-length"} <= {r.framing for r in got}
