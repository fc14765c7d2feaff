/* On-the-fly compression of response bodies with zstd, br or gzip: a filter inside the response
 * writer (req.c), between the handlers' edge_resp_* calls and the protocol, so proxied answers
 * and static files are compressed the same way over any protocol. Only req.c calls these. */
#ifndef HEARTH_EDGE_COMPRESS_H
#define HEARTH_EDGE_COMPRESS_H

#include "edge/req.h"

/* While dispatching (the request head is readable): whether the response may be compressed at
 * all (sets r->zflags) and the coding the client prefers (r->coding). */
void edge_compress_request(edge_req *r);
/* The response head starts (r->zflags is set). */
void edge_compress_head_start(edge_req *r);
/* A field of the head: what the filter decides on is noted; ETag and Vary are held back (true)
 * to be written, amended, when the head ends. */
bool edge_compress_field(edge_req *r, const char *name, size_t name_len, const char *value,
                         size_t value_len);
/* The head ends: the held fields go out, and when the body is to be compressed its encoder
 * starts, Content-Encoding is added and *length becomes EDGE_LEN_UNKNOWN. */
void edge_compress_head_end(edge_req *r, int64_t *length);

/* The body, while r->encoder exists: as edge_resp_write, edge_resp_send_file and
 * edge_resp_flush, with the compressed bytes going to the protocol. */
void edge_compress_write(edge_req *r, const void *p, size_t n);
int64_t edge_compress_send_file(edge_req *r, int fd, off_t off, uint64_t left);
int edge_compress_flush(edge_req *r);
/* The last compressed bytes go out and the encoder is freed; -1 when the stream could not be
 * completed (the response must then be aborted). */
int edge_compress_finish(edge_req *r);
/* Frees the encoder of a response that ends otherwise (aborted, the client gone). */
void edge_compress_drop(edge_req *r);

#endif
