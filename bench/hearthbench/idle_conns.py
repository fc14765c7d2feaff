"""Holds N idle keep-alive TLS connections to HOST:PORT for the idle-memory rows of bench/run:
each does a handshake and one GET of PATH (whole response read) over PROTOCOL (http/1.1, or h2
on Debian's python3-h2), then stays open until stdin closes. Prints "ready" once all N are
open; exits 1 with the reason if one fails."""
import socket
import ssl
import sys


def open_one(ctx, host, port, request):
    s = ctx.wrap_socket(socket.create_connection((host, port), timeout=30),
                        server_hostname="localhost")
    s.sendall(request)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed before the response head")
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status_line:
        raise OSError(f"answered {status_line!r}")
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n")
               if line.lower().startswith(b"content-length:")]
    if not lengths or not lengths[0].strip().isdigit():
        raise OSError("the answer has no usable Content-Length")
    length = int(lengths[0])
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed in the body")
        body += chunk
    return s


def open_h2(ctx, host, port, path):
    """One h2 connection past its first answer; the h2 library's state is dropped (an idle
    connection answers nothing until it closes)."""
    import h2.config
    import h2.connection
    import h2.events
    s = ctx.wrap_socket(socket.create_connection((host, port), timeout=30),
                        server_hostname="localhost")
    if s.selected_alpn_protocol() != "h2":
        raise OSError(f"ALPN chose {s.selected_alpn_protocol()}, not h2")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":path", path),
                          (":authority", "localhost")], end_stream=True)
    s.sendall(conn.data_to_send())
    status = None
    while True:
        data = s.recv(65536)
        if not data:
            raise OSError("closed before the answer ended")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers).get(b":status")
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                if status != b"200":
                    raise OSError(f"answered {status!r}")
                s.sendall(conn.data_to_send())
                return s
        s.sendall(conn.data_to_send())


def main():
    host, port, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    protocol = sys.argv[5] if len(sys.argv) > 5 else "http/1.1"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([protocol])
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    held = []
    try:
        for _ in range(n):
            held.append(open_h2(ctx, host, port, path) if protocol == "h2" else
                        open_one(ctx, host, port, request))
    except OSError as e:
        print(f"connection {len(held) + 1} of {n}: {e}", file=sys.stderr)
        sys.exit(1)
    print("ready", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
