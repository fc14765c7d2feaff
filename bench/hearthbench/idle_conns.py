"""Holds N idle keep-alive TLS connections to HOST:PORT for the memory row of bench/edge.sh:
each does a handshake and one request, then stays open until stdin closes."""
import selectors
import socket
import ssl
import sys


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = f"GET /1k.html HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    held = []
    for _ in range(n):
        s = ctx.wrap_socket(socket.create_connection((host, port), timeout=30),
                            server_hostname="localhost")
        s.sendall(req)
        got = b""
        while b"\r\n\r\n" not in got or len(got) < 1024:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        held.append(s)
    print("ready", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
