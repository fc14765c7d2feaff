"""Holds N idle keep-alive TLS connections to HOST:PORT for the idle-memory row of bench/run:
each does a handshake and one GET of PATH (whole response read), then stays open until stdin
closes. Prints "ready" once all N are open; exits 1 with the reason if one fails."""
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


def main():
    host, port, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    held = []
    try:
        for _ in range(n):
            held.append(open_one(ctx, host, port, request))
    except OSError as e:
        print(f"connection {len(held) + 1} of {n}: {e}", file=sys.stderr)
        sys.exit(1)
    print("ready", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
