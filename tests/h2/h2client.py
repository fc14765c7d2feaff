"""A well-behaved HTTP/2 client on the h2 library (Debian's python3-h2): what a correct peer
sends, so a case can check the server answers correctly when nothing is wrong."""
import socket
import time

import h2.config
import h2.connection
import h2.events

from h2wire import DEADLINE, tls_context


class Answer:
    def __init__(self):
        self.headers, self.body, self.trailers, self.reset, self.done = {}, b"", {}, None, False

    @property
    def status(self):
        return int(self.headers[":status"])


class Client:
    def __init__(self, server):
        self.server = server
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        self.sock = tls_context().wrap_socket(sock, server_hostname=server.host)
        assert self.sock.selected_alpn_protocol() == "h2"
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.answers = {}
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self):
        self.sock.close()

    def request(self, method, path, headers=(), body=b"", trailers=()):
        """Start a request; returns its stream id. A body bigger than the send window goes
        out as the window opens, while wait() reads the answers."""
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "https"), (":path", path),
                  (":authority", self.server.host)] + list(headers)
        self.conn.send_headers(sid, fields, end_stream=not body and not trailers)
        a = self.answers[sid] = Answer()
        a.unsent = (body, list(trailers)) if body or trailers else None
        self._send_body(sid)
        self.flush()
        return sid

    def _send_body(self, sid):
        a = self.answers[sid]
        if a.unsent is None:
            return
        body, trailers = a.unsent
        while body:
            room = min(self.conn.local_flow_control_window(sid),
                       self.conn.max_outbound_frame_size)
            if room <= 0:
                a.unsent = (body, trailers)
                return
            chunk, body = body[:room], body[room:]
            self.conn.send_data(sid, chunk, end_stream=not body and not trailers)
        if trailers:
            self.conn.send_headers(sid, trailers, end_stream=True)
        a.unsent = None

    def wait(self, *sids, timeout=DEADLINE):
        """Read until the given streams (all open ones if none) have ended; returns them."""
        sids = sids or tuple(self.answers)
        deadline = time.monotonic() + timeout
        while not all(self.answers[s].done for s in sids):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"answers on {sids} not complete in {timeout} s")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("server closed the connection")
            for event in self.conn.receive_data(data):
                self._on(event)
            for s in self.answers:
                self._send_body(s)
            self.flush()
        return [self.answers[s] for s in sids]

    def _on(self, event):
        a = self.answers.get(getattr(event, "stream_id", None))
        if isinstance(event, h2.events.ResponseReceived):
            a.headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            a.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            a.trailers = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            a.done = True
        elif isinstance(event, h2.events.StreamReset):
            a.reset, a.done = event.error_code, True
        elif isinstance(event, h2.events.ConnectionTerminated):
            raise AssertionError(f"server sent GOAWAY {event.error_code!r}")

    def fetch(self, method, path, headers=(), body=b"", trailers=(), timeout=DEADLINE):
        return self.wait(self.request(method, path, headers, body, trailers),
                         timeout=timeout)[0]
