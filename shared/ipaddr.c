/* IP addresses in one 16-byte form and CIDR ranges of them (ipaddr.h). */
#include "shared/ipaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void from_v4(const void *four, ip_addr *out)
{
    memcpy(out->b, v4_mapped, 12);
    memcpy(out->b + 12, four, 4);
}

int ip_parse(const char *s, size_t n, ip_addr *out)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(text))
        return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        from_v4(&a4, out);
        return 0;
    }
    return inet_pton(AF_INET6, text, out->b) == 1 ? 0 : -1;
}

int ip_from_sockaddr(const struct sockaddr *sa, ip_addr *out)
{
    if (sa->sa_family == AF_INET) {
        from_v4(&((const struct sockaddr_in *)sa)->sin_addr, out);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

bool ip_is_v4(const ip_addr *a)
{
    return memcmp(a->b, v4_mapped, 12) == 0;
}

void ip_format(const ip_addr *a, char *out, size_t len)
{
    if (!inet_ntop(ip_is_v4(a) ? AF_INET : AF_INET6, ip_is_v4(a) ? a->b + 12 : a->b, out,
                   (socklen_t)len))
        snprintf(out, len, "?");
}

static void mask(ip_addr *a, int bits)
{
    for (int i = 0; i < 16; i++) {
        int keep = bits - 8 * i;
        a->b[i] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
    }
}

int ip_cidr_parse(const char *s, ip_cidr *out)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (ip_parse(s, alen, &out->addr) < 0)
        return -1;
    int max = ip_is_v4(&out->addr) ? 32 : 128;
    int bits = max;
    if (slash) {
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end || v > max)
            return -1;
        bits = (int)v;
    }
    out->bits = bits + (max == 32 ? 96 : 0);
    ip_addr masked = out->addr;
    mask(&masked, out->bits);
    return memcmp(&masked, &out->addr, sizeof(masked)) == 0 ? 0 : -1;
}

bool ip_cidr_contains(const ip_cidr *c, const ip_addr *a)
{
    ip_addr masked = *a;
    mask(&masked, c->bits);
    return memcmp(&masked, &c->addr, sizeof(masked)) == 0;
}
