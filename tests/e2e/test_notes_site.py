"""The example Flask site (examples/notes) under each WSGI server in conftest.NOTES_SERVERS:
the JSON API, the HTML forms (post/redirect/get, upload), the streamed CSV export, error pages
and security headers, spoken to with http.client."""
import csv
import http.client
import io
import json
from urllib.parse import urlencode

import pytest

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy",
                    "X-Frame-Options")


class Site:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None):
        """The response, its body read into .body; redirects are not followed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            response.body = response.read()
            return response
        finally:
            conn.close()

    def post_json(self, path, value):
        return self.request("POST", path, json.dumps(value), {"Content-Type": "application/json"})

    def json(self, path):
        response = self.request("GET", path)
        assert response.status == 200, response.body
        return json.loads(response.body)

    def page(self):
        response = self.request("GET", "/")
        assert response.status == 200
        return response.body.decode()


@pytest.fixture
def site(notes_server, tmp_path):
    return Site(notes_server(tmp_path / "notes.db"))


def multipart(fields, files):
    """A multipart/form-data body and its Content-Type; files: name -> (filename, bytes)."""
    boundary = "hearth-test-boundary-7d1f"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
             f"{value}\r\n".encode() for name, value in fields.items()]
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'.encode()
                     + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_api_create_list_get_delete(site):
    created = site.post_json("/api/notes", {"title": "first", "body": "some text"})
    assert created.status == 201
    note = json.loads(created.body)
    assert note["title"] == "first" and note["body"] == "some text"
    assert created.getheader("Location") == f"/api/notes/{note['id']}"
    # a form works as well as JSON, and the body is optional
    second = site.request("POST", "/api/notes", urlencode({"title": "second"}), FORM)
    assert second.status == 201 and json.loads(second.body)["body"] == ""

    assert [n["title"] for n in site.json("/api/notes")["notes"]] == ["first", "second"]
    assert site.json(f"/api/notes/{note['id']}") == note
    assert site.request("DELETE", f"/api/notes/{note['id']}").status == 204
    for method in ("GET", "DELETE"):
        gone = site.request(method, f"/api/notes/{note['id']}")
        assert gone.status == 404
        assert json.loads(gone.body) == {"error": "no such note"}
    assert [n["title"] for n in site.json("/api/notes")["notes"]] == ["second"]


# One server for all the cases of a test (rather than parametrize): a start is most of the time.
def test_api_refuses_bad_notes_with_422(site):
    for value in ({"body": "no title"}, {"title": ""}, {"title": "x" * 201}, {"title": 5},
                  ["not", "an", "object"]):
        response = site.post_json("/api/notes", value)
        assert response.status == 422, value
        assert "title" in json.loads(response.body)["error"]
    assert site.json("/api/notes") == {"notes": []}


def test_form_post_redirect_get_and_delete(site):
    title = "Buy <milk> & eggs"
    added = site.request("POST", "/notes", urlencode({"title": title, "body": "two"}), FORM)
    assert added.status == 303
    (note,) = site.json("/api/notes")["notes"]
    assert added.getheader("Location") == f"/#note-{note['id']}"
    page = site.page()
    # listed, escaped by Jinja, with its own delete form
    assert "Buy &lt;milk&gt; &amp; eggs" in page and title not in page
    assert f'action="/notes/{note["id"]}/delete"' in page

    deleted = site.request("POST", f"/notes/{note['id']}/delete")
    assert deleted.status == 303 and deleted.getheader("Location") == "/"
    assert "Buy &lt;milk&gt;" not in site.page()
    assert site.request("POST", f"/notes/{note['id']}/delete").status == 404


def test_form_upload_attaches_text_file(site):
    body, headers = multipart({"title": "with file", "body": "typed"},
                              {"attachment": ("todo.txt", "attached ünïcode\n".encode())})
    assert site.request("POST", "/notes", body, headers).status == 303
    (note,) = site.json("/api/notes")["notes"]
    assert note["body"] == "typed\n\nattached ünïcode"


def test_form_errors_rerender_the_page_with_422(site):
    for fields, files in (({"title": " "}, {}),
                          ({"title": "binary"}, {"attachment": ("x.bin", b"\xff\xfe not utf-8")})):
        body, headers = multipart(fields, files)
        response = site.request("POST", "/notes", body, headers)
        assert response.status == 422, fields
        assert 'role="alert"' in response.body.decode()
    assert site.json("/api/notes") == {"notes": []}


def test_upload_over_the_limit_is_413_page(site):
    body, headers = multipart({"title": "big"}, {"attachment": ("big.txt", b"a" * 100_000)})
    response = site.request("POST", "/notes", body, headers)
    assert response.status == 413
    assert "413 Request Entity Too Large" in response.body.decode()
    assert site.json("/api/notes") == {"notes": []}


def test_csv_export_is_streamed(site):
    titles = [f"note {i}, with a comma" for i in range(40)]
    for title in titles:
        assert site.post_json("/api/notes", {"title": title, "body": 'say "hi"'}).status == 201
    response = site.request("GET", "/api/notes.csv")
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/csv")
    # a generator's body: its length is not known up front, so it goes out chunked
    assert response.getheader("Content-Length") is None
    assert response.getheader("Transfer-Encoding") == "chunked"
    rows = list(csv.DictReader(io.StringIO(response.body.decode())))
    assert [r["title"] for r in rows] == titles
    assert {r["body"] for r in rows} == {'say "hi"'}


def test_error_pages_are_html_in_the_site_layout(site):
    for method, path, status in (("GET", "/no/such/page", 404), ("PUT", "/", 405),
                                 ("GET", "/notes/1/delete", 405)):
        response = site.request(method, path)
        assert response.status == status, path
        assert response.getheader("Content-Type").startswith("text/html")
        page = response.body.decode()
        assert f"<h1>{status} " in page and 'href="/static/style.css"' in page
        if status == 405:
            allowed = response.getheader("Allow")
            assert allowed and method not in allowed.split(", ")


def test_api_errors_are_json(site):
    response = site.request("GET", "/api/nothing")
    assert response.status == 404 and response.getheader("Content-Type") == "application/json"
    assert "error" in json.loads(response.body)
    assert site.request("PUT", "/api/notes").status == 405


def test_server_error_is_a_500_page_without_details(notes_server, tmp_path):
    # the database cannot be opened: every note request fails inside the app
    site = Site(notes_server(tmp_path / "missing-dir" / "notes.db"))
    response = site.request("GET", "/")
    assert response.status == 500
    page = response.body.decode()
    assert "<h1>500 Internal Server Error</h1>" in page and "sqlite" not in page.lower()
    assert site.request("GET", "/api/notes").status == 500


def test_favicon_and_static_files(site):
    icon = site.request("GET", "/favicon.ico")
    assert icon.status == 200
    assert icon.body[:4] == b"\0\0\1\0"  # an ICO file's header
    assert site.request("GET", "/static/favicon.ico").body == icon.body
    css = site.request("GET", "/static/style.css")
    assert css.status == 200 and css.getheader("Content-Type").startswith("text/css")
    page = site.page()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert 'rel="icon" href="/static/favicon.ico"' in page


def check_security_headers(site, path):
    plain = site.request("GET", path)
    for name in SECURITY_HEADERS:
        assert plain.getheader(name), (path, name)
    csp = plain.getheader("Content-Security-Policy")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert plain.getheader("X-Content-Type-Options") == "nosniff"
    assert plain.getheader("Strict-Transport-Security") is None, path
    # as the edge forwards an HTTPS request from loopback, the app sees scheme https
    proxied = site.request("GET", path, headers={"X-Forwarded-Proto": "https"})
    assert proxied.getheader("Strict-Transport-Security").startswith("max-age="), path


def test_security_headers_on_every_response_and_hsts_only_on_https(site):
    for path in ("/", "/api/notes", "/no/such/page", "/static/style.css", "/favicon.ico"):
        check_security_headers(site, path)


def test_cross_origin_posts_are_refused(site):
    own = f"http://127.0.0.1:{site.port}"
    evil = site.request("POST", "/notes", urlencode({"title": "evil"}),
                        {**FORM, "Origin": "http://evil.example"})
    assert evil.status == 403
    assert site.request("DELETE", "/api/notes/1", headers={"Origin": "null"}).status == 403
    assert site.json("/api/notes") == {"notes": []}
    ours = site.request("POST", "/notes", urlencode({"title": "ours"}), {**FORM, "Origin": own})
    assert ours.status == 303
