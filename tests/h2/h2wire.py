"""Raw HTTP/2 over TLS for the conformance cases: frames written byte by byte (so a case can
send what no library would), header blocks encoded by hand (RFC 7541), and a reader that
waits, never longer than DEADLINE seconds, for what RFC 9113 says the server must answer.

A case builds frames with frame() (any type, flags, stream and payload) or with hyperframe's
classes for the well-formed ones, sends them with Wire.send, then asserts one outcome:
  goaway(code)            a connection error: GOAWAY with that code (RFC 9113 5.4.1)
  stream_error(sid, ...)  a stream error: RST_STREAM with one of the codes on that stream, or
                          the same code in a GOAWAY (5.4.1 lets a stream error end the whole
                          connection)
  rejected(sid)           a malformed request (8.1.1): a stream error PROTOCOL_ERROR, or an
                          HTTP 4xx answer (a server MAY answer before it resets)
  response(sid)           a normal answer: status, headers, body
  alive()                 a PING answered: the connection survived everything sent before
  closed()                the server ended the TCP connection
"""
import os
import socket
import ssl
import struct
import time

import hpack
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEADLINE = 2.0  # no case waits longer than this for one answer

# frame types (RFC 9113 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
# flags
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# error codes (RFC 9113 7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, \
    STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = range(10)
ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR",
               3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED",
               6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
               10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY",
               13: "HTTP_1_1_REQUIRED"}
TYPE_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
              "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
# SETTINGS identifiers (RFC 9113 6.5.2)
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, \
    MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)


class Failure(AssertionError):
    pass


def error_name(code):
    return ERROR_NAMES.get(code, hex(code))


# ---------------------------------------------------------------------------------------------
# frames


def frame(ftype, flags, stream_id, payload=b"", length=None):
    """One frame exactly as given; `length` lets the header lie about the payload."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + struct.pack(">BBI", ftype, flags, stream_id) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v)
                                                          for k, v in pairs))


def ping(data=b"\0" * 8, ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def window_update(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def rst_stream(stream_id, code):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def goaway_frame(last_stream, code, stream_id=0):
    return frame(GOAWAY, 0, stream_id, struct.pack(">II", last_stream, code))


def priority_payload(depends_on, weight=16, exclusive=False):
    """Stream dependency, E bit and weight (1..256, sent as weight-1)."""
    return struct.pack(">IB", depends_on | (0x80000000 if exclusive else 0), weight - 1)


def priority(stream_id, depends_on=0, weight=16, exclusive=False):
    return frame(PRIORITY, 0, stream_id, priority_payload(depends_on, weight, exclusive))


def data(stream_id, payload, end_stream=False, pad=None):
    """A DATA frame; pad=n adds the Pad Length byte and n zero octets."""
    flags = END_STREAM if end_stream else 0
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return frame(DATA, flags, stream_id, payload)


def headers(stream_id, block, end_stream=True, end_headers=True, pad=None, prio=None):
    """A HEADERS frame carrying `block` (bytes); prio=(depends_on, weight, exclusive)."""
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    body = block
    if prio is not None:
        flags |= PRIORITY_FLAG
        body = priority_payload(*prio) + body
    if pad is not None:
        flags |= PADDED
        body = bytes([pad]) + body + b"\0" * pad
    return frame(HEADERS, flags, stream_id, body)


def continuation(stream_id, block, end_headers=True):
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, stream_id, block)


# ---------------------------------------------------------------------------------------------
# HPACK by hand (RFC 7541): every block stands alone (no dynamic table entries unless a case
# adds them on purpose), so a case can put any field, valid or not, in any order.

STATIC = HeaderTable.STATIC_TABLE
_huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def integer(value, prefix_bits, first_byte_flags=0):
    """RFC 7541 5.1: an integer with an N-bit prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = [first_byte_flags | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string(value, huffman=False):
    """RFC 7541 5.2: a string literal, raw or Huffman-coded."""
    if isinstance(value, str):
        value = value.encode()
    if huffman:
        value = _huffman.encode(value)
    return integer(len(value), 7, 0x80 if huffman else 0) + value


def static_index(name, value=None):
    """Index (1-based) of an exact static-table entry, or of the first one with that name."""
    name = name.encode() if isinstance(name, str) else name
    value = value.encode() if isinstance(value, str) else value
    for i, (n, v) in enumerate(STATIC, 1):
        if n == name and (value is None or v == value):
            return i
    return None


def indexed(index):
    """6.1: Indexed Header Field."""
    return integer(index, 7, 0x80)


def literal(name, value, kind="without", huffman=False, name_index=None):
    """6.2: a literal field; kind is 'incremental' (6.2.1), 'without' (6.2.2) or 'never'
    (6.2.3). The name is sent as a literal unless name_index is given."""
    prefix, flags = {"incremental": (6, 0x40), "without": (4, 0x00), "never": (4, 0x10)}[kind]
    if name_index is not None:
        return integer(name_index, prefix, flags) + string(value, huffman)
    return bytes([flags]) + string(name, huffman) + string(value, huffman)


def table_size_update(size):
    """6.3: Dynamic Table Size Update."""
    return integer(size, 5, 0x20)


def field(name, value):
    """The shortest stateless representation: a static entry if one matches exactly, else a
    literal without indexing (with a static name where there is one)."""
    exact = static_index(name, value)
    if exact is not None:
        return indexed(exact)
    return literal(name, value, "without", name_index=static_index(name))


def block(fields):
    """A header block from (name, value) pairs, in order, exactly as given."""
    return b"".join(field(n, v) for n, v in fields)


def request_fields(method="GET", path="/index.html", authority="localhost", scheme="https",
                   extra=()):
    return [(":method", method), (":scheme", scheme), (":path", path),
            (":authority", authority)] + list(extra)


def request_block(*args, **kw):
    return block(request_fields(*args, **kw))


# ---------------------------------------------------------------------------------------------
# the connection


class Frame:
    def __init__(self, ftype, flags, stream_id, payload):
        self.type, self.flags, self.stream_id, self.payload = ftype, flags, stream_id, payload
        self.fields = None  # the decoded header block, on the frame that ended it

    @property
    def error_code(self):
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        return struct.unpack(">I", self.payload[:4])[0]

    def __repr__(self):
        name = TYPE_NAMES[self.type] if self.type < len(TYPE_NAMES) else hex(self.type)
        extra = ""
        if self.type in (GOAWAY, RST_STREAM) and len(self.payload) >= 4:
            extra = " " + error_name(self.error_code)
            if self.type == GOAWAY and len(self.payload) > 8:
                extra += f" {self.payload[8:80]!r}"
        if self.fields is not None:
            extra = f" {self.fields}"
        return f"<{name} flags={self.flags:#x} stream={self.stream_id} len={len(self.payload)}" \
               f"{extra}>"


def data_of(f):
    """A DATA frame's payload without its padding."""
    if f.flags & PADDED:
        return f.payload[1:len(f.payload) - f.payload[0]]
    return f.payload


class Closed(Exception):
    pass


def tls_context(alpn=("h2",)):
    # the servers under test use a self-signed certificate made for the run
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class Wire:
    """One TLS connection to the server under test, spoken to frame by frame."""

    def __init__(self, server, alpn=("h2",)):
        self.server = server
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        self.sock = tls_context(alpn).wrap_socket(sock, server_hostname=server.host)
        self.buf = b""
        self.decoder = hpack.Decoder()
        self.pending_block = None  # (stream, bytes) while a header block spans frames
        self.server_settings = {}
        self.answers = {}  # stream -> the fields of its final (non-1xx) answer
        self.seen = []  # every frame read, for failure messages
        self.eof = False

    @property
    def alpn(self):
        return self.sock.selected_alpn_protocol()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *chunks):
        """Write the bytes; a server that already closed (as it may after an error) is not
        an error here: the outcome is read afterwards."""
        for c in chunks:
            try:
                self.sock.sendall(c)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
                return

    def open_stream(self, sid, method="POST", path="/echo", extra=()):
        """A request whose HEADERS leave the stream open (no END_STREAM): the server waits
        for its body."""
        self.send(headers(sid, request_block(method, path, extra=extra), end_stream=False))

    def data_until_quiet(self, sid, want=0, quiet=0.3):
        """The DATA payload that arrives on `sid`: at least `want` octets (waiting up to
        DEADLINE for them), then whatever more comes before `quiet` seconds pass without a
        frame; a case compares the total with what flow control allowed."""
        got, deadline = b"", time.monotonic() + DEADLINE
        while True:
            try:
                f = self.next_frame(deadline if len(got) < want else time.monotonic() + quiet)
            except Closed:
                return got
            except TimeoutError:
                if len(got) < want:
                    raise Failure(f"{len(got)} of {want} octets on {sid} in time"
                                  f"{self._history()}") from None
                return got
            if f.type == GOAWAY or (f.type == RST_STREAM and f.stream_id == sid):
                raise Failure(f"{f!r} while reading the answer{self._history()}")
            if f.type == DATA and f.stream_id == sid:
                got += data_of(f)
                if f.flags & END_STREAM:
                    return got

    def handshake(self, *pairs):
        """Preface and SETTINGS (with `pairs`), then wait for the server's SETTINGS and ACK
        them (RFC 9113 3.4)."""
        self.send(PREFACE + settings(*pairs))
        f = self.next_frame()
        if f.type != SETTINGS or f.flags & ACK:
            raise Failure(f"the server's first frame is {f!r}, not SETTINGS (RFC 9113 3.4)")
        self.server_settings = dict(struct.unpack(">HI", f.payload[i:i + 6])
                                    for i in range(0, len(f.payload), 6))
        self.send(settings(ack=True))
        return self

    # --- reading ---

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            chunk = b""
        except socket.timeout:
            raise TimeoutError from None
        if not chunk:
            self.eof = True
            raise Closed
        self.buf += chunk

    def next_frame(self, deadline=None):
        """The next frame; Closed at end of stream, TimeoutError past the deadline."""
        if deadline is None:
            deadline = time.monotonic() + DEADLINE
        while len(self.buf) < 9:
            self._fill(deadline)
        length = int.from_bytes(self.buf[:3], "big")
        ftype, flags, sid = struct.unpack(">BBI", self.buf[3:9])
        while len(self.buf) < 9 + length:
            self._fill(deadline)
        f = Frame(ftype, flags, sid & 0x7FFFFFFF, self.buf[9:9 + length])
        self.buf = self.buf[9 + length:]
        self._decode_fields(f)
        self.seen.append(f)
        return f

    def _decode_fields(self, f):
        if f.type == HEADERS:
            body = f.payload
            if f.flags & PADDED:
                body = body[1:len(body) - body[0]]
            if f.flags & PRIORITY_FLAG:
                body = body[5:]
            self.pending_block = (f.stream_id, body)
        elif f.type == CONTINUATION and self.pending_block:
            self.pending_block = (f.stream_id, self.pending_block[1] + f.payload)
        else:
            return
        if f.flags & END_HEADERS:
            f.fields = [(n.decode(), v.decode(errors="replace"))
                        for n, v in self.decoder.decode(self.pending_block[1], raw=True)]
            self.pending_block = None
            status = dict(f.fields).get(":status", "")
            if status and not status.startswith("1"):
                self.answers.setdefault(f.stream_id, f.fields)

    def frames(self, timeout=DEADLINE):
        """Frames as they come until `timeout` passes or the server closes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                yield self.next_frame(deadline)
            except (Closed, TimeoutError):
                return

    def _history(self):
        return "; frames read: " + ", ".join(repr(f) for f in self.seen[-12:])

    def wait_for(self, accept, what, timeout=DEADLINE):
        """Read until accept(frame) returns something true and return that."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.next_frame(deadline)
            except Closed:
                raise Failure(f"connection closed while waiting for {what}{self._history()}")
            except TimeoutError:
                raise Failure(f"no {what} within {timeout} s{self._history()}") from None
            got = accept(f)
            if got:
                return got

    # --- outcomes ---

    def goaway(self, *codes):
        """A connection error: GOAWAY with one of `codes`."""
        f = self.wait_for(lambda f: f if f.type == GOAWAY else None,
                          f"GOAWAY {'/'.join(map(error_name, codes))}")
        if f.error_code not in codes:
            raise Failure(f"GOAWAY {error_name(f.error_code)}, expected "
                          f"{'/'.join(map(error_name, codes))}{self._history()}")
        return f

    def stream_error(self, sid, *codes):
        """A stream error on `sid` (RST_STREAM), or the same code as a connection error."""
        want = "/".join(map(error_name, codes))

        def accept(f):
            if f.type == GOAWAY or (f.type == RST_STREAM and f.stream_id == sid):
                return f
            return None
        f = self.wait_for(accept, f"RST_STREAM {want} on stream {sid} (or GOAWAY {want})")
        if f.error_code not in codes:
            raise Failure(f"{f!r}, expected {want}{self._history()}")
        return f

    def rejected(self, sid):
        """A malformed request (RFC 9113 8.1.1): PROTOCOL_ERROR on the stream or the
        connection, or an HTTP 4xx answer; never a 2xx or 3xx."""
        def accept(f):
            if f.type == GOAWAY or (f.type == RST_STREAM and f.stream_id == sid):
                return f
            if f.type in (HEADERS, CONTINUATION) and f.stream_id == sid and f.fields:
                return f
            return None
        f = self.wait_for(accept, f"RST_STREAM/GOAWAY PROTOCOL_ERROR or a 4xx on stream {sid}")
        if f.fields is not None:
            status = dict(f.fields).get(":status", "")
            if not status.startswith("4"):
                raise Failure(f"malformed request answered {status}: {f.fields}")
        elif f.error_code != PROTOCOL_ERROR:
            raise Failure(f"{f!r}, expected PROTOCOL_ERROR{self._history()}")
        return f

    def response(self, sid, window_updates=True):
        """The whole answer on `sid`: (status, fields, body). Replenishes the windows as DATA
        arrives unless told not to."""
        got = {"body": b"", "ended": False}

        def accept(f):
            if (f.type == GOAWAY and f.error_code != NO_ERROR) or \
                    (f.type == RST_STREAM and f.stream_id == sid):
                raise Failure(f"{f!r} instead of an answer{self._history()}")
            if f.stream_id != sid:
                return None
            if f.type == DATA:
                got["body"] += data_of(f)
                if window_updates and f.payload:
                    self.send(window_update(0, len(f.payload)),
                              window_update(sid, len(f.payload)))
            got["ended"] |= f.type in (DATA, HEADERS) and bool(f.flags & END_STREAM)
            if not got["ended"] or self.pending_block is not None:
                return None
            fields = self.answers.get(sid)
            if fields is None:
                raise Failure(f"stream {sid} ended without an answer{self._history()}")
            return int(dict(fields)[":status"]), fields, got["body"]
        return self.wait_for(accept, f"the whole answer on stream {sid}")

    def alive(self):
        """Send a PING and wait for its ACK: the connection survived, no error was raised."""
        payload = os.urandom(8)
        self.send(ping(payload))

        def accept(f):
            if f.type == GOAWAY:
                raise Failure(f"{f!r} instead of a PING ACK{self._history()}")
            if f.type == RST_STREAM and f.error_code != NO_ERROR:
                raise Failure(f"{f!r}: the server reset a stream{self._history()}")
            return f.type == PING and f.flags & ACK and f.payload == payload
        self.wait_for(accept, "PING ACK")

    def closed(self):
        """The server closes the TCP connection (after a GOAWAY or not)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                self.next_frame(deadline)
            except Closed:
                return
            except TimeoutError:
                raise Failure(f"connection still open after {DEADLINE} s{self._history()}") \
                    from None


def connect(server, *pairs):
    """A connection past the preface and SETTINGS exchange."""
    return Wire(server).handshake(*pairs)

