"""What a killed component leaves behind: its workers finish what they hold, then go.

The edge's master dying (a SIGKILL, an OOM kill) must not cost the site the requests its
workers are serving: the supervisor restarts the edge on the sockets it keeps, and the old
workers, which closed their listening sockets at once, finish their responses first."""
import os
import signal
import socket
import ssl
import threading

from hearthkit.certs import make_test_pki
from hearthkit.ports import free_port
from hearthkit.procs import pid_alive, wait_until
from hearthkit.supervisor import Stack

BIG = 8 * 1024 * 1024


def start_static_stack(tmp_path, procs):
    stack = Stack(tmp_path, procs, real=True)
    pki = make_test_pki(tmp_path / "pki", "DNS:site.localhost")
    root = tmp_path / "static"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(1024) * (BIG // 1024))
    https_port = free_port()
    stack.write_config(supervisor={"stop_timeout": "20s"}, sites=(
        "  - name: site.localhost\n"
        f"    tls: {{cert: {pki}/cert.pem, key: {pki}/key.pem}}\n"
        f"    static:\n      - prefix: /files/\n        root: {root}\n"
        "    upstreams: []\n"))
    with open(stack.config) as f:
        text = f.read().replace("  https: []\n", f'  https: ["127.0.0.1:{https_port}"]\n')
    with open(stack.config, "w") as f:
        f.write(text)
    stack.start()
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    return stack, https_port, ctx


def slow_download(port, ctx, started, result):
    """GET the big file with a small receive buffer, pausing until told, so the response is
    still in flight when the edge's master is killed."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    raw.settimeout(20)
    raw.connect(("127.0.0.1", port))
    with ctx.wrap_socket(raw, server_hostname="site.localhost") as s:
        s.sendall(b"GET /files/big.bin HTTP/1.1\r\nHost: site.localhost\r\n"
                  b"Connection: close\r\n\r\n")
        data = s.recv(65536)
        started.set()
        result["go"].wait(10)
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    result["status"] = head.split(b" ", 2)[1]
    result["length"] = len(body)


def test_killed_edge_master_loses_no_response_in_flight(tmp_path, procs):
    stack, https_port, ctx = start_static_stack(tmp_path, procs)
    old = stack.status()["edge"]["pid"]
    started, result = threading.Event(), {"go": threading.Event()}
    t = threading.Thread(target=slow_download, args=(https_port, ctx, started, result))
    t.start()
    assert started.wait(10), "the download did not start"
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: stack.running_anew("edge", old), what="the edge restarted")
    result["go"].set()
    t.join(30)
    assert result.get("status") == b"200" and result.get("length") == BIG, \
        (result.get("status"), result.get("length"))
    # the restarted edge serves too, and the old worker has gone once its response was sent
    stack.proc and wait_until(lambda: "finish their requests" in stack.log(),
                              what="the supervisor's note on the old workers")
    assert "killed what was still left" not in stack.log(), stack.log()
    assert stack.ctl("stop").returncode == 0
    stack.wait_exit()
    assert not pid_alive(old)
