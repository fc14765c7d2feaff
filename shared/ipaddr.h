/* IP addresses as one 16-byte form (IPv4 as ::ffff:a.b.c.d) and CIDR ranges of them: the
 * config's trusted_proxies, checked by the loader and matched by the edge, and the client
 * addresses that X-Forwarded-For and the PROXY protocol carry. */
#ifndef HEARTH_IPADDR_H
#define HEARTH_IPADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    uint8_t b[16];
} ip_addr;

typedef struct {
    ip_addr addr; /* the bits past the prefix are zero */
    int bits;     /* 0-128, counted in the 16-byte form (an IPv4 /8 is 104) */
} ip_cidr;

/* "192.0.2.1" or "2001:db8::1" (n bytes, no brackets, no port); -1 when it is neither. */
int ip_parse(const char *s, size_t n, ip_addr *out);
/* An AF_INET or AF_INET6 socket address; -1 for any other family. */
int ip_from_sockaddr(const struct sockaddr *sa, ip_addr *out);
bool ip_is_v4(const ip_addr *a);
/* Written as inet_ntop does (IPv4 dotted); out holds at least 46 bytes. */
void ip_format(const ip_addr *a, char *out, size_t len);
/* "10.0.0.0/8", "2001:db8::/32" or a bare address (a range of one); -1 when malformed, or
 * when bits are set past the prefix ("10.0.0.1/8" is a mistake worth saying). */
int ip_cidr_parse(const char *s, ip_cidr *out);
bool ip_cidr_contains(const ip_cidr *c, const ip_addr *a);

#endif
