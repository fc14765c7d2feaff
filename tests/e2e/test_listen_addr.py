"""Listen addresses mean one thing everywhere (shared/listen_addr.c, docs/config.md): ":PORT"
is dual-stack for a standalone edge as under the supervisor; a name such as localhost is
resolved, by `hearth check` and by every program that binds, to every address it has; and a
bad address is refused by check with the words the binary itself uses."""
import socket
import ssl
import subprocess

import pytest

from hearthkit import binary
from hearthkit.certs import make_test_pki
from hearthkit.ports import free_port, ipv6_loopback, port_open
from hearthkit.procs import wait_until

SUPERVISOR = binary("supervisor", "hearth")
EDGE = binary("edge", "edge")
APPSERVER = binary("appserver", "appserver")
HELLO = binary("examples", "hello.so")


def localhost_addresses():
    """Every address localhost resolves to here ("127.0.0.1", and "::1" when /etc/hosts says)."""
    return sorted({ai[4][0] for ai in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)})


def get(host, port, tls=False, timeout=5):
    """The status line of GET / on host:port (TLS without verification: only the listener is
    under test)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="a.localhost")
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0].decode()


def write_config(tmp_path, http=None, https=None, bind=None, modules=False):
    """A config for the supervisor: a static site; the appserver only with modules."""
    www = tmp_path / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("home\n")
    pki = make_test_pki(tmp_path / "pki", "DNS:a.localhost")
    text = (f"run_dir: {tmp_path}/run\nstate_dir: {tmp_path}/state\n"
            f"edge:\n  http: {http or []}\n  https: {https or []}\n")
    if modules:
        text += f"appserver:\n  modules: [{HELLO}]\n  bind: {bind or []}\n"
    tls = f"{{cert: {pki}/cert.pem, key: {pki}/key.pem}}" if https else "off"
    text += (f"sites:\n  - name: a.localhost\n    tls: {tls}\n"
             f"    static: [{{prefix: /, root: {www}}}]\n")
    path = tmp_path / "hearth.yaml"
    path.write_text(text)
    return str(path), pki, www


def check(config):
    return subprocess.run([SUPERVISOR, "check", "-c", config], capture_output=True, text=True,
                          timeout=30)


def standalone_edge(procs, pki, www, *listen):
    return procs.start([EDGE, *listen, "--server-name", "a.localhost",
                        "--cert", f"{pki}/cert.pem", "--key", f"{pki}/key.pem",
                        "--static", f"/={www}"], name="edge")


def wait_listening(p, procs, port, hosts):
    wait_until(lambda: p.poll() is not None or all(port_open(port, h) for h in hosts),
               what="listening")
    assert p.poll() is None, procs.log(p)


# --- ":PORT": every address, IPv4 and IPv6, standalone as under the supervisor -----------------

@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("how", ["standalone", "supervisor"])
def test_any_port_is_dual_stack(procs, tmp_path, how):
    hp, sp = free_port(), free_port()
    config, pki, www = write_config(tmp_path, http=[f":{hp}"], https=[f":{sp}"])
    if how == "standalone":
        p = standalone_edge(procs, pki, www, "--http", f":{hp}", "--https", f":{sp}")
    else:
        p = procs.start([SUPERVISOR, "start", "-c", config], name="supervisor")
    for port in (hp, sp):
        wait_listening(p, procs, port, ["127.0.0.1", "::1"])
    for host in ("127.0.0.1", "::1"):
        wait_until(lambda: p.poll() is not None or get(host, sp, tls=True) == "HTTP/1.1 200 OK",
                   what=f"HTTPS on {host}")
        assert get(host, sp, tls=True) == "HTTP/1.1 200 OK"
        assert get(host, hp).startswith("HTTP/1.1 301")


# --- a name: resolved at start, by check as by bind, to every address it has -------------------

def test_localhost_edge_check_and_bind_agree(procs, tmp_path):
    port = free_port()
    config, pki, www = write_config(tmp_path, https=[f"localhost:{port}"])
    r = check(config)
    assert r.returncode == 0, r.stderr
    p = standalone_edge(procs, pki, www, "--https", f"localhost:{port}")
    wait_listening(p, procs, port, localhost_addresses())
    for host in localhost_addresses():
        assert get(host, port, tls=True) == "HTTP/1.1 200 OK"


def test_localhost_appserver_check_and_bind_agree(procs, tmp_path):
    port = free_port()
    config, _, _ = write_config(tmp_path, http=[f":{free_port()}"], bind=[f"localhost:{port}"],
                                modules=True)
    r = check(config)
    assert r.returncode == 0, r.stderr
    p = procs.start([APPSERVER, "-w", "1", "-b", f"localhost:{port}", HELLO], name="appserver")
    wait_listening(p, procs, port, localhost_addresses())
    for host in localhost_addresses():
        assert get(host, port) == "HTTP/1.1 200 OK"


# --- a bad address: check refuses it with the binary's own words ------------------------------

BAD = {
    "port_range": ("127.0.0.1:99999", "the port must be a number from 1 to 65535"),
    "ipv6_brackets": ("::1:8080", "an IPv6 address needs brackets, as in [::1]:8080"),
    "unresolvable": ("no-such-host.invalid:8080", "cannot resolve 'no-such-host.invalid'"),
    "unix_too_long": ("unix:/" + "x" * 120, "a unix socket holds at most 107"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_address_check_says_what_the_binary_says(procs, tmp_path, case):
    spec, why = BAD[case]
    message = f"address '{spec}': "
    if case == "unix_too_long":
        config, _, _ = write_config(tmp_path, http=[f":{free_port()}"], bind=[spec], modules=True)
        p = procs.start([APPSERVER, "-b", spec, HELLO], name="binary")
    else:
        config, pki, www = write_config(tmp_path, http=[spec])
        p = standalone_edge(procs, pki, www, "--http", spec)
    r = check(config)
    assert r.returncode == 2, r.stderr
    assert p.wait(timeout=10) != 0
    said = procs.log(p)
    line = next((x for x in said.splitlines() if message in x), "")
    assert why in line, said
    words = line[line.index(message):]
    assert words in r.stderr, (words, r.stderr)
