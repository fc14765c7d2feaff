"""RFC 9113 8 with a well-behaved client (the h2 library): requests a browser sends, answered
right, several at once on one connection, with flow control both ways."""
import pytest

from h2client import Client
from h2peers import NO_TRAILERS, breaks


@pytest.fixture
def client(server):
    c = Client(server)
    yield c
    c.close()


def test_get(client, server):
    a = client.fetch("GET", "/index.html")
    assert a.status == 200 and a.body == server.file("index.html")


def test_head(client, server):
    a = client.fetch("HEAD", "/index.html")
    assert a.status == 200 and a.body == b""
    assert int(a.headers["content-length"]) == len(server.file("index.html"))


def test_missing_file(client):
    assert client.fetch("GET", "/no-such-file").status == 404


def test_post(client):
    a = client.fetch("POST", "/echo", [("content-length", "1000")], body=b"p" * 1000)
    assert a.status == 200 and a.body == b"p" * 1000


@breaks(nginx=NO_TRAILERS)
def test_post_with_trailers(client):
    a = client.fetch("POST", "/echo", body=b"with trailers", trailers=[("x-sum", "abc")])
    assert a.status == 200 and a.body == b"with trailers"


def test_post_larger_than_the_initial_window(client):
    """6.9: a 256 KiB body needs the server's WINDOW_UPDATEs to get through."""
    body = bytes(range(256)) * 1024
    a = client.fetch("POST", "/echo", [("content-length", str(len(body)))], body=body)
    assert a.status == 200 and a.body == body


def test_large_file(client, server):
    """6.9: 1 MiB through many window updates."""
    a = client.fetch("GET", "/1m.bin")
    assert a.status == 200 and a.body == server.file("1m.bin")


def test_many_streams_on_one_connection(client, server):
    """5: thirty requests at once, each answered on its own stream."""
    paths = ["/index.html", "/1k.html"] * 15
    sids = [client.request("GET", p) for p in paths]
    for path, a in zip(paths, client.wait(*sids)):
        assert a.status == 200 and a.body == server.file(path[1:])


def test_large_answers_interleave(client, server):
    """5: three 1 MiB answers at once all complete."""
    sids = [client.request("GET", "/1m.bin") for _ in range(3)]
    for a in client.wait(*sids):
        assert a.status == 200 and a.body == server.file("1m.bin")


def test_range(client, server):
    a = client.fetch("GET", "/1k.html", [("range", "bytes=10-19")])
    assert a.status == 206 and a.body == server.file("1k.html")[10:20]


def test_if_none_match(client):
    etag = client.fetch("GET", "/1k.html").headers["etag"]
    a = client.fetch("GET", "/1k.html", [("if-none-match", etag)])
    assert a.status == 304 and a.body == b""
