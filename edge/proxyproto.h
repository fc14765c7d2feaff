/* The PROXY protocol header (HAProxy's specification, versions 1 and 2) that a load balancer
 * sends before a connection's first byte to say where the client connected from. A pure parser
 * over the bytes seen so far; clientaddr.c reads them from the socket. */
#ifndef HEARTH_EDGE_PROXYPROTO_H
#define HEARTH_EDGE_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest version 1 header, CRLF included (the specification's bound). */
#define PROXYPROTO_V1_MAX 107
/* Bytes that always hold a whole version 1 header, or enough of a version 2 one to parse. */
#define PROXYPROTO_PARSE_MAX 256

typedef enum {
    PROXYPROTO_MORE, /* not complete: every byte seen belongs to the header */
    PROXYPROTO_DONE,
    PROXYPROTO_BAD, /* not a PROXY header, or a malformed one: close the connection */
} proxyproto_result;

typedef struct {
    size_t len;    /* the whole header's length; for version 2 it may be past what was seen */
    bool has_addr; /* src holds the client's; false for LOCAL, UNKNOWN or non-IP families, where
                    * the connection's own peer stands */
    struct sockaddr_storage src;
} proxyproto_header;

/* Over the first n bytes of a connection (at most PROXYPROTO_PARSE_MAX are looked at). */
proxyproto_result proxyproto_parse(const uint8_t *p, size_t n, proxyproto_header *h);

#endif
