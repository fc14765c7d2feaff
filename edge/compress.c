/* On-the-fly compression: which responses are compressed (the site's settings, the client's
 * Accept-Encoding, what the head says), how their heads change (Content-Encoding, Vary, a weak
 * ETag, no length), and the encoders that turn body bytes into zstd, br or gzip as they pass,
 * in bounded memory: the output goes to the protocol at once, whose queue the handlers already
 * watch (edge_resp_writable), so a response of any size costs one encoder's state. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <brotli/encode.h>
#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include "edge/coding.h"
#include "edge/compress.h"

/* r->zflags: the response may be compressed, and what its head said so far. */
enum {
    ZF_ON = 1 << 0,           /* the site compresses and the request allows it */
    ZF_TYPE = 1 << 1,         /* Content-Type is one of the site's types */
    ZF_ENCODED = 1 << 2,      /* the body has a Content-Encoding already */
    ZF_NO_TRANSFORM = 1 << 3, /* Cache-Control: no-transform */
};

/* The largest window the encoders use (512 KiB): their memory per response is a few times
 * this, and text repeats itself at shorter distances than that. */
#define WINDOW_BITS 19
/* A gzip body of known length up to this is gathered and compressed in one call by libdeflate,
 * two to three times as fast as zlib's stream at the same level and a little smaller (a 100 KiB
 * JSON answer at level 6: 0.6 ms and 13.9 kB against 1.6 ms and 14.5 kB). It costs its length
 * in memory, about what zlib's state takes, and holds the body back until its last byte came,
 * which for an answer this short is a moment. Longer and streamed bodies go through zlib. */
#define WHOLE_MAX (256 * 1024)

/* A body gathered for a one-call encoder. */
typedef struct {
    unsigned char *data;
    size_t len, got;
    int level;
} whole_body;

struct edge_encoder {
    edge_coding coding;
    bool whole;  /* gzip by libdeflate: s.body gathers the body */
    bool fresh;  /* took input since the last flush */
    bool failed; /* the encoder refused: the response cannot be completed */
    union {
        z_stream gz;
        BrotliEncoderState *br;
        ZSTD_CCtx *zstd;
        whole_body body;
    } s;
};

typedef enum { STEP_RUN, STEP_FLUSH, STEP_END } step;

/* An encoder's output passes through here to the protocol, which copies it; files are read
 * here to be compressed. One of each per worker: no request keeps them between calls. */
static unsigned char out_scratch[32768];
static unsigned char file_scratch[EDGE_READ_CHUNK];

/* ETag, Vary and Accept-Ranges of the head being built, held back until its end: a handler
 * builds a head in one go (from edge_resp_start to edge_resp_head_done without returning to the
 * loop), so one set serves the worker. held_etag starts with "W/", skipped unless the ETag is
 * weakened. */
static buf held_etag, held_vary, held_ranges;
static const edge_req *held_for;

/* ---- which responses ---- */

void edge_compress_request(edge_req *r)
{
    r->zflags = 0;
    r->coding = EDGE_CODING_NONE;
    size_t len;
    /* HEAD answers carry no body; a range is of the identity body; HTTP/1.0 could only get a
     * compressed body (of unknown length) by losing its keep-alive, as nginx's
     * gzip_http_version 1.1 says too. */
    if (!r->site || !r->site->compression.enabled || r->head_method ||
        strcmp(r->protocol, "HTTP/1.0") == 0 || edge_req_header(r, "Range", &len))
        return;
    r->zflags = ZF_ON;
    const char *ae = edge_req_header(r, "Accept-Encoding", &len);
    if (ae)
        r->coding = (uint8_t)edge_coding_choose(ae, len);
}

void edge_compress_head_start(edge_req *r)
{
    assert(!held_for);
    held_for = r;
    r->zflags = ZF_ON;
    buf_reset(&held_etag);
    buf_reset(&held_vary);
    buf_reset(&held_ranges);
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

bool edge_compress_field(edge_req *r, const char *name, size_t name_len, const char *value,
                         size_t value_len)
{
    if (name_is(name, name_len, "content-type")) {
        if (edge_media_listed(value, value_len, &r->site->compression.types))
            r->zflags |= ZF_TYPE;
    } else if (name_is(name, name_len, "content-encoding")) {
        if (!name_is(value, value_len, "identity"))
            r->zflags |= ZF_ENCODED;
    } else if (name_is(name, name_len, "cache-control")) {
        if (edge_list_has(value, value_len, "no-transform"))
            r->zflags |= ZF_NO_TRANSFORM;
    } else if (name_is(name, name_len, "etag")) {
        buf_reset(&held_etag);
        buf_append(&held_etag, "W/", 2);
        buf_append(&held_etag, value, value_len);
        return true;
    } else if (name_is(name, name_len, "vary")) {
        if (buf_used(&held_vary) > 0)
            buf_append(&held_vary, ", ", 2);
        buf_append(&held_vary, value, value_len);
        return true;
    } else if (name_is(name, name_len, "accept-ranges")) {
        buf_reset(&held_ranges);
        buf_append(&held_ranges, value, value_len);
        return true;
    }
    return false;
}

/* Whether the body would be compressed for a client that takes a coding: a status with a body
 * of its own (not 1xx, 204, 206 or 304), a listed type, not encoded already, no no-transform,
 * and not known to be shorter than min_length. */
static bool compressible(const edge_req *r, int64_t length)
{
    int s = r->status;
    return s >= 200 && s != 204 && s != 206 && s != 304 && (r->zflags & ZF_TYPE) &&
           !(r->zflags & (ZF_ENCODED | ZF_NO_TRANSFORM)) && length != EDGE_LEN_NONE &&
           length != 0 && (length < 0 || (uint64_t)length >= r->site->compression.min_length);
}

/* ---- the encoders ---- */

/* For a body of known length, a smaller window that still covers it (zlib and brotli size
 * their state by the window). */
static int window_bits(int64_t length, int min_bits)
{
    int bits = WINDOW_BITS;
    while (length > 0 && bits > min_bits && length <= (INT64_C(1) << (bits - 1)))
        bits--;
    return bits;
}

static bool gzip_start(struct edge_encoder *e, int level, int64_t length)
{
    if (length > 0 && length <= WHOLE_MAX) {
        e->whole = true;
        e->s.body.len = (size_t)length;
        e->s.body.level = level;
        e->s.body.data = malloc((size_t)length);
        return e->s.body.data != NULL;
    }
    int bits = window_bits(length, 9), mem = bits > 15 ? 8 : bits - 7;
    if (bits > 15)
        bits = 15; /* deflate's largest window */
    /* 16 + bits: a gzip header and trailer around the deflate stream */
    return deflateInit2(&e->s.gz, level, Z_DEFLATED, 16 + bits, mem, Z_DEFAULT_STRATEGY) == Z_OK;
}

static bool br_start(struct edge_encoder *e, int level, int64_t length)
{
    BrotliEncoderState *s = BrotliEncoderCreateInstance(NULL, NULL, NULL);
    if (!s)
        return false;
    BrotliEncoderSetParameter(s, BROTLI_PARAM_QUALITY, (uint32_t)level);
    BrotliEncoderSetParameter(s, BROTLI_PARAM_LGWIN,
                              (uint32_t)window_bits(length, BROTLI_MIN_WINDOW_BITS));
    if (length > 0 && length < (INT64_C(1) << 30))
        BrotliEncoderSetParameter(s, BROTLI_PARAM_SIZE_HINT, (uint32_t)length);
    e->s.br = s;
    return true;
}

static bool zstd_start(struct edge_encoder *e, int level, int64_t length)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    if (!c)
        return false;
    /* a known length lets zstd size its tables to the body (and says it in the frame) */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, WINDOW_BITS)) ||
        (length > 0 && ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c, (unsigned long long)length)))) {
        ZSTD_freeCCtx(c);
        return false;
    }
    e->s.zstd = c;
    return true;
}

static struct edge_encoder *encoder_new(edge_coding coding, const config_compression *cc,
                                        int64_t length)
{
    struct edge_encoder *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->coding = coding;
    bool ok = coding == EDGE_CODING_GZIP ? gzip_start(e, cc->gzip_level, length)
              : coding == EDGE_CODING_BR ? br_start(e, cc->br_level, length)
                                         : zstd_start(e, cc->zstd_level, length);
    if (!ok) {
        free(e);
        return NULL;
    }
    return e;
}

static void encoder_free(struct edge_encoder *e)
{
    if (e->whole)
        free(e->s.body.data);
    else if (e->coding == EDGE_CODING_GZIP)
        deflateEnd(&e->s.gz);
    else if (e->coding == EDGE_CODING_BR)
        BrotliEncoderDestroyInstance(e->s.br);
    else
        ZSTD_freeCCtx(e->s.zstd);
    free(e);
}

static void emit_from(edge_req *r, const unsigned char *p, size_t n)
{
    if (n == 0)
        return;
    r->body_sent += n; /* the bytes on the wire, as nginx's $body_bytes_sent */
    r->proto->write(r, (const char *)p, n);
}

static void emit(edge_req *r, size_t n)
{
    emit_from(r, out_scratch, n);
}

/* libdeflate's compressors, one per level in use, and their output: the worker's, since a
 * body is compressed within one call. */
static struct libdeflate_compressor *deflaters[10];
static unsigned char *whole_out;

static bool whole_step(edge_req *r, whole_body *b, const unsigned char *p, size_t n, step s)
{
    if (n > b->len - b->got)
        return false; /* more than the length the head announced */
    if (n > 0)
        memcpy(b->data + b->got, p, n);
    b->got += n;
    if (s != STEP_END)
        return true; /* a flush cannot send part of a body compressed in one call */
    int level = b->level;
    size_t room = libdeflate_gzip_compress_bound(NULL, WHOLE_MAX);
    if (!deflaters[level])
        deflaters[level] = libdeflate_alloc_compressor(level);
    if (!whole_out)
        whole_out = malloc(room);
    if (b->got != b->len || !deflaters[level] || !whole_out)
        return false;
    size_t n_out = libdeflate_gzip_compress(deflaters[level], b->data, b->len, whole_out, room);
    emit_from(r, whole_out, n_out);
    return n_out > 0;
}

static bool gzip_step(edge_req *r, z_stream *z, const unsigned char *p, size_t n, step s)
{
    int flush = s == STEP_RUN ? Z_NO_FLUSH : s == STEP_FLUSH ? Z_SYNC_FLUSH : Z_FINISH;
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)n;
    do {
        z->next_out = out_scratch;
        z->avail_out = sizeof(out_scratch);
        int rc = deflate(z, flush);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return false;
        emit(r, sizeof(out_scratch) - z->avail_out);
    } while (z->avail_out == 0);
    return true;
}

static bool br_step(edge_req *r, BrotliEncoderState *st, const unsigned char *p, size_t n, step s)
{
    BrotliEncoderOperation op = s == STEP_RUN     ? BROTLI_OPERATION_PROCESS
                                : s == STEP_FLUSH ? BROTLI_OPERATION_FLUSH
                                                  : BROTLI_OPERATION_FINISH;
    for (;;) {
        size_t room = sizeof(out_scratch);
        uint8_t *next_out = out_scratch;
        if (!BrotliEncoderCompressStream(st, op, &n, &p, &room, &next_out, NULL))
            return false;
        emit(r, sizeof(out_scratch) - room);
        if (n == 0 && !BrotliEncoderHasMoreOutput(st) &&
            (op != BROTLI_OPERATION_FINISH || BrotliEncoderIsFinished(st)))
            return true;
    }
}

static bool zstd_step(edge_req *r, ZSTD_CCtx *c, const unsigned char *p, size_t n, step s)
{
    ZSTD_EndDirective d = s == STEP_RUN     ? ZSTD_e_continue
                          : s == STEP_FLUSH ? ZSTD_e_flush
                                            : ZSTD_e_end;
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {out_scratch, sizeof(out_scratch), 0};
        size_t left = ZSTD_compressStream2(c, &out, &in, d);
        if (ZSTD_isError(left))
            return false;
        emit(r, out.pos);
        if (d == ZSTD_e_continue ? in.pos == in.size : left == 0)
            return true;
    }
}

/* Feed n bytes (none for a flush or the end) through r's encoder to the protocol. */
static void encode(edge_req *r, const void *p, size_t n, step s)
{
    struct edge_encoder *e = r->encoder;
    if (e->failed)
        return;
    /* zlib counts in uInt: pass at most 1 GiB at a time */
    for (size_t done = 0; !e->failed && (done < n || (n == 0 && done == 0));) {
        size_t piece = n - done > (1u << 30) ? (1u << 30) : n - done;
        const unsigned char *q = n ? (const unsigned char *)p + done : NULL;
        bool ok = e->whole                        ? whole_step(r, &e->s.body, q, piece, s)
                  : e->coding == EDGE_CODING_GZIP ? gzip_step(r, &e->s.gz, q, piece, s)
                  : e->coding == EDGE_CODING_BR   ? br_step(r, e->s.br, q, piece, s)
                                                  : zstd_step(r, e->s.zstd, q, piece, s);
        e->failed = !ok;
        done += piece;
        if (n == 0)
            break;
    }
    if (e->failed)
        log_warn("%s encoder failed: the response is cut short", edge_coding_name(e->coding));
}

/* ---- the head ---- */

/* Vary, merged into one field, naming Accept-Encoding when the coding depends on it. */
static bool vary_has(const char *token)
{
    return buf_used(&held_vary) > 0 &&
           edge_list_has(buf_head(&held_vary), buf_used(&held_vary), token);
}

static void put_vary(edge_req *r, bool depends)
{
    if (depends && !vary_has("accept-encoding") && !vary_has("*")) {
        if (buf_used(&held_vary) > 0)
            buf_append(&held_vary, ", ", 2);
        buf_append_str(&held_vary, "Accept-Encoding");
    }
    if (buf_used(&held_vary) > 0)
        r->proto->head_field(r, "Vary", 4, buf_head(&held_vary), buf_used(&held_vary));
}

/* A compressed body is not byte-for-byte the one a strong ETag names (RFC 9110 8.8.1). */
static void put_etag(edge_req *r, bool weaken)
{
    if (buf_used(&held_etag) == 0)
        return;
    const char *v = buf_head(&held_etag);
    size_t skip = weaken && v[2] == '"' ? 0 : 2;
    r->proto->head_field(r, "ETag", 4, v + skip, buf_used(&held_etag) - skip);
}

void edge_compress_head_end(edge_req *r, int64_t *length)
{
    assert(held_for == r);
    held_for = NULL;
    bool fits = compressible(r, *length);
    edge_coding coding = (edge_coding)r->coding;
    if (fits && coding != EDGE_CODING_NONE)
        r->encoder = encoder_new(coding, &r->site->compression, *length);
    put_vary(r, fits);
    put_etag(r, r->encoder != NULL);
    /* ranges are of the uncompressed body (a Range request is never compressed): a compressed
     * answer offers none, as nginx's gzip clears Accept-Ranges */
    if (!r->encoder && buf_used(&held_ranges) > 0)
        r->proto->head_field(r, "Accept-Ranges", 13, buf_head(&held_ranges),
                             buf_used(&held_ranges));
    if (!r->encoder)
        return;
    const char *name = edge_coding_name(coding);
    r->proto->head_field(r, "Content-Encoding", 16, name, strlen(name));
    *length = EDGE_LEN_UNKNOWN;
}

/* ---- the body ---- */

void edge_compress_write(edge_req *r, const void *p, size_t n)
{
    encode(r, p, n, STEP_RUN);
    r->encoder->fresh = true;
}

/* A file is read and compressed a chunk at a time, once the protocol's queue is short. */
int64_t edge_compress_send_file(edge_req *r, int fd, off_t off, uint64_t left)
{
    if (r->encoder->failed)
        return -1;
    if (r->proto->queued(r) >= EDGE_READ_CHUNK) {
        if (r->proto->flush(r) < 0)
            return -1;
        if (r->proto->queued(r) >= EDGE_READ_CHUNK)
            return 0;
    }
    struct edge_encoder *e = r->encoder;
    whole_body *b = &e->s.body;
    size_t want = left > sizeof(file_scratch) ? sizeof(file_scratch) : (size_t)left;
    if (e->whole && want > b->len - b->got)
        return -1; /* the file grew under us: the body is the length the head announced */
    /* a gathered body is read where it is kept */
    unsigned char *to = e->whole ? b->data + b->got : file_scratch;
    ssize_t got;
    do
        got = pread(fd, to, want, off);
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return -1; /* the file shrank under us: the promised body cannot be kept */
    if (e->whole)
        b->got += (size_t)got;
    else
        edge_compress_write(r, file_scratch, (size_t)got);
    return e->failed ? -1 : got;
}

/* A handler flushes when it has nothing more to give for now (the upstream went quiet): what
 * the encoder holds goes out too, so a streamed response is not held back by compression. */
int edge_compress_flush(edge_req *r)
{
    struct edge_encoder *e = r->encoder;
    if (e->fresh) {
        encode(r, NULL, 0, STEP_FLUSH);
        e->fresh = false;
    }
    return e->failed ? -1 : 0;
}

int edge_compress_finish(edge_req *r)
{
    encode(r, NULL, 0, STEP_END);
    bool ok = !r->encoder->failed;
    edge_compress_drop(r);
    return ok ? 0 : -1;
}

void edge_compress_drop(edge_req *r)
{
    if (held_for == r)
        held_for = NULL; /* a head begun and never completed */
    if (r->encoder)
        encoder_free(r->encoder);
    r->encoder = NULL;
}
