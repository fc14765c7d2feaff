"""RFC 7541 (HPACK) as RFC 9113 4.3 uses it: every representation a client may send is
decoded, and every decoding error is a connection error COMPRESSION_ERROR."""
import hpack
import pytest

from h2peers import LATE_SIZE_UPDATE, breaks
from h2wire import (COMPRESSION_ERROR, HEADER_TABLE_SIZE, block, headers, indexed, integer,
                    literal, request_fields, string, table_size_update)

FIELDS = request_fields()
BLOCK = block(FIELDS)


def bits(s):
    """Bytes from a string of 0s and 1s (a whole number of octets)."""
    return int(s, 2).to_bytes(len(s) // 8, "big")


def raw_huffman_value(name, coded):
    """A literal field whose value is the given bytes, flagged as Huffman-coded."""
    return b"\x00" + string(name) + integer(len(coded), 7, 0x80) + coded


A = "00011"  # 'a' in the Huffman code (RFC 7541 Appendix B)
EOS = "1" * 30


def table_limit(conn):
    return conn.server_settings.get(HEADER_TABLE_SIZE, 4096)


# --- decoding errors --------------------------------------------------------------------------

TRUNCATED = breaks(nginx="answers FRAME_SIZE_ERROR, not COMPRESSION_ERROR")
BAD_BLOCKS = {
    # 6.1: index 0 is not used
    "indexed field with index 0": BLOCK + b"\x80",
    # 2.3.3: indices past the static table (61) and the (empty) dynamic table
    "indexed field past both tables": BLOCK + indexed(62),
    "indexed field far past both tables": BLOCK + indexed(1 << 20),
    "literal with a name index past both tables": BLOCK + literal(None, "v", "incremental",
                                                                  name_index=62),
    "literal without indexing, name index past": BLOCK + literal(None, "v", name_index=70),
    # 4.2: a size update only at the start of a block
    "table size update at the end": pytest.param(
        BLOCK + table_size_update(0), marks=breaks(nginx=LATE_SIZE_UPDATE,
                                                   caddy=LATE_SIZE_UPDATE)),
    "table size update between fields": pytest.param(
        block(FIELDS[:2]) + table_size_update(0) + block(FIELDS[2:]),
        marks=breaks(nginx=LATE_SIZE_UPDATE, caddy=LATE_SIZE_UPDATE)),
    # 5.2: padding over 7 bits, padding that is not the EOS prefix, and EOS itself
    "Huffman padding longer than 7 bits": pytest.param(
        BLOCK + raw_huffman_value("x-h", bits(A + "1" * 11)),
        marks=breaks(nginx="takes Huffman padding longer than 7 bits")),
    "Huffman padding of zeros": BLOCK + raw_huffman_value("x-h", bits(A + "000")),
    "Huffman string with EOS": BLOCK + raw_huffman_value("x-h", bits(EOS + A + "11111")),
    # 5.1, 5.2: representations cut short or overflowing
    "truncated integer": pytest.param(BLOCK + b"\xff", marks=TRUNCATED),
    "string longer than the block": pytest.param(BLOCK + b"\x00\x0aabc", marks=TRUNCATED),
    "integer overflow": BLOCK + b"\xff" + b"\xff" * 10 + b"\x01",
}


@pytest.mark.parametrize("bad", BAD_BLOCKS.values(), ids=BAD_BLOCKS.keys())
def test_decoding_error(conn, bad):
    conn.send(headers(1, bad))
    conn.goaway(COMPRESSION_ERROR)


def test_table_size_update_above_the_setting(conn):
    """6.3: a size update above SETTINGS_HEADER_TABLE_SIZE is a decoding error."""
    conn.send(headers(1, table_size_update(table_limit(conn) + 1) + BLOCK))
    conn.goaway(COMPRESSION_ERROR)


def test_entry_evicted_by_a_size_update(conn):
    """4.3, 4.2: an entry evicted by a size update of 0 can no longer be referenced."""
    conn.send(headers(1, BLOCK + literal("x-dyn", "one", "incremental")))
    assert conn.response(1)[0] == 200
    conn.send(headers(3, table_size_update(0) + BLOCK + indexed(62)))
    conn.goaway(COMPRESSION_ERROR)


# --- representations that must be understood --------------------------------------------------

LITERALS = {f"{kind} {'indexed' if idx else 'new'} name{' huffman' if huff else ''}":
            (kind, idx, huff)
            for kind in ("incremental", "without", "never")
            for idx in (True, False) for huff in (False, True)}


@pytest.mark.parametrize("kind,indexed_name,huffman", LITERALS.values(), ids=LITERALS.keys())
def test_literal_representation(conn, kind, indexed_name, huffman):
    """6.2.1-6.2.3: literal fields with incremental, without or never indexing, with an
    indexed or a new name, raw or Huffman-coded."""
    name = "user-agent" if indexed_name else "x-literal"
    rep = literal(name, "h2 conformance", kind, huffman, name_index=58 if indexed_name else None)
    conn.send(headers(1, BLOCK + rep))
    assert conn.response(1)[0] == 200


def test_only_indexed_fields(conn):
    """6.1: :method GET, :scheme https and :path / come from the static table."""
    conn.send(headers(1, indexed(2) + indexed(7) + indexed(4) +
                      literal(None, "localhost", name_index=1)))
    assert conn.response(1)[0] == 200


def test_huffman_coded_path(conn):
    conn.send(headers(1, block(FIELDS[:2] + FIELDS[3:]) +
                      literal(None, "/index.html", huffman=True, name_index=4)))
    status, _, body = conn.response(1)
    assert status == 200 and body == conn.server.file("index.html")


def test_dynamic_table_entry_used_by_a_later_request(conn):
    """2.3.2, 4: an entry added by one request's block is referenced by the next one's."""
    conn.send(headers(1, BLOCK + literal("x-dyn", "one", "incremental")))
    assert conn.response(1)[0] == 200
    conn.send(headers(3, BLOCK + indexed(62)))
    assert conn.response(3)[0] == 200


SIZE_UPDATES = {
    "to 0": [0],
    "to 0 then back to the limit": [0, None],
    "to the limit": [None],
    "to 100": [100],
}


@pytest.mark.parametrize("sizes", SIZE_UPDATES.values(), ids=SIZE_UPDATES.keys())
def test_table_size_update_at_the_start(conn, sizes):
    """4.2, 6.3: one or two size updates at the start of a block, up to the setting."""
    ups = b"".join(table_size_update(table_limit(conn) if s is None else s) for s in sizes)
    conn.send(headers(1, ups + BLOCK + literal("x-after", "update", "incremental")))
    assert conn.response(1)[0] == 200


def test_full_encoder_over_several_requests(conn):
    """A real encoder's output (dynamic table, Huffman) across requests on one connection."""
    enc = hpack.Encoder()
    for sid in (1, 3, 5):
        fields = FIELDS + [("user-agent", "h2-suite/1"), ("x-seq", str(sid)),
                           ("accept", "*/*")]
        conn.send(headers(sid, enc.encode(fields)))
        assert conn.response(sid)[0] == 200
