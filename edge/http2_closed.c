/* Frames on streams that have closed (RFC 9113 5.1), answered without nghttp2 keeping the
 * streams. nghttp2 would keep up to max_concurrent_streams closed streams per connection (a few
 * hundred bytes each, and its table of streams, a page that then never reads as zeros, see
 * http2_mem.c) for as long as the connection lives, idle or not, to tell a DATA frame on a
 * stream whose client side had ended (a connection error STREAM_CLOSED) from one still in
 * flight when the stream was reset (ignored). The edge has it keep none
 * (nghttp2_option_set_no_closed_streams) and keeps that one bit itself, for the last
 * H2_CLOSED_KEPT client streams.
 *
 * nghttp2 drops DATA on a stream it does not know without a callback, so the bytes read are
 * handed to it in two parts wherever a DATA frame's header ends: the header is looked at
 * first, with nghttp2's state as the frames before it left it. */
#include <string.h>

#include "edge/http2.h"

/* A frame header: length (24 bits), type, flags, stream (31 bits). */
#define FRAME_HEADER 9

/* The bit of stream id in h->ended, or -1 when it is outside the bits kept. */
static int ended_bit(const h2_conn *h, int32_t id)
{
    if (id > h->ended_top || (h->ended_top - id) / 2 >= H2_CLOSED_KEPT)
        return -1;
    return (h->ended_top - id) / 2;
}

static void shift_ended(h2_conn *h, int32_t by)
{
    for (; by > 0; by--) {
        h->ended[1] = h->ended[1] << 1 | h->ended[0] >> 63;
        h->ended[0] <<= 1;
    }
}

void h2_closed_record(h2_conn *h, int32_t id, bool client_ended)
{
    if (!(id & 1))
        return; /* the edge opens no streams */
    if (id > h->ended_top) {
        int32_t by = (id - h->ended_top) / 2;
        if (by >= H2_CLOSED_KEPT)
            h->ended[0] = h->ended[1] = 0;
        else
            shift_ended(h, by);
        h->ended_top = id;
    }
    int bit = ended_bit(h, id);
    if (bit >= 0 && client_ended)
        h->ended[bit / 64] |= (uint64_t)1 << (bit % 64);
}

/* What nghttp2 does with the closed streams it keeps: DATA after the client's END_STREAM ends
 * the connection (STREAM_CLOSED); DATA on a stream the edge reset is ignored. */
static void check_header(h2_conn *h, const uint8_t *hd)
{
    int32_t id =
        (int32_t)(((uint32_t)hd[5] << 24 | (uint32_t)hd[6] << 16 | (uint32_t)hd[7] << 8 | hd[8]) &
                  0x7fffffff);
    if (hd[3] != NGHTTP2_DATA || nghttp2_session_find_stream(h->session, id))
        return;
    int bit = ended_bit(h, id);
    if (bit >= 0 && h->ended[bit / 64] >> (bit % 64) & 1)
        nghttp2_session_terminate_session(h->session, NGHTTP2_STREAM_CLOSED);
}

/* Hand n bytes to nghttp2; false when it failed (the connection must close). */
static bool feed(h2_conn *h, const uint8_t *p, size_t n, ssize_t *err)
{
    if (n == 0)
        return true;
    ssize_t r = nghttp2_session_mem_recv(h->session, p, n);
    /* (it takes fewer only when a callback pauses it, which the edge's never do; the frame
     * boundaries would be lost) */
    *err = r < 0 ? r : NGHTTP2_ERR_CALLBACK_FAILURE;
    return r == (ssize_t)n;
}

ssize_t h2_closed_recv(h2_conn *h, const uint8_t *data, size_t len)
{
    size_t done = 0, fed = 0;
    ssize_t err = 0;
    while (done < len) {
        if (h->frame_left > 0) {
            size_t n = len - done < h->frame_left ? len - done : h->frame_left;
            h->frame_left -= (uint32_t)n;
            done += n;
            continue;
        }
        size_t n = FRAME_HEADER - h->header_have;
        if (n > len - done)
            n = len - done;
        memcpy(h->header + h->header_have, data + done, n);
        h->header_have += (uint8_t)n;
        done += n;
        if (h->header_have < FRAME_HEADER)
            break;
        h->header_have = 0;
        h->frame_left = (uint32_t)h->header[0] << 16 | (uint32_t)h->header[1] << 8 | h->header[2];
        if (h->header[3] != NGHTTP2_DATA)
            continue;
        /* nghttp2 takes this header only once it has been looked at */
        if (!feed(h, data + fed, done - 1 - fed, &err))
            return err;
        fed = done - 1;
        check_header(h, h->header);
    }
    if (!feed(h, data + fed, len - fed, &err))
        return err;
    return (ssize_t)len;
}
