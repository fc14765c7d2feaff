/* The PROXY protocol header, versions 1 (a text line) and 2 (binary), parsed strictly: exact
 * signatures, single spaces, addresses of the named family, ports 0-65535, lengths that hold
 * the address block they announce. Anything else is refused, never guessed at. */
#include "edge/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v2_sig[12] = {'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};
#define V2_HEAD 16

/* ---- version 1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" ---- */

/* The next space-separated token of line[*at, end): never empty, never two spaces. */
static bool next_token(const char *line, size_t end, size_t *at, char *out, size_t cap)
{
    size_t start = *at, i = start;
    while (i < end && line[i] != ' ')
        i++;
    if (i == start || i - start >= cap)
        return false;
    memcpy(out, line + start, i - start);
    out[i - start] = '\0';
    *at = i < end ? i + 1 : i;
    return !(i < end && i + 1 == end); /* a trailing space */
}

static bool parse_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    unsigned v = 0;
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *port = (uint16_t)v;
    return v <= 65535;
}

static bool v1_address(const char *family, const char *text, uint16_t port,
                       struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (strcmp(family, "TCP4") == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        return inet_pton(AF_INET, text, &in->sin_addr) == 1;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    return strcmp(family, "TCP6") == 0 && inet_pton(AF_INET6, text, &in6->sin6_addr) == 1;
}

/* The line without its CRLF, len bytes, "PROXY " included. */
static proxyproto_result v1_line(const char *line, size_t len, proxyproto_header *h)
{
    char family[8], src[48], dst[48], sport[8], dport[8];
    size_t at = 6;
    struct sockaddr_storage unused;
    uint16_t sp, dp;
    if (!next_token(line, len, &at, family, sizeof(family)))
        return PROXYPROTO_BAD;
    if (strcmp(family, "UNKNOWN") == 0)
        return PROXYPROTO_DONE; /* the rest of the line is to be ignored */
    if (!next_token(line, len, &at, src, sizeof(src)) ||
        !next_token(line, len, &at, dst, sizeof(dst)) ||
        !next_token(line, len, &at, sport, sizeof(sport)) ||
        !next_token(line, len, &at, dport, sizeof(dport)) || at != len)
        return PROXYPROTO_BAD;
    if (!parse_port(sport, &sp) || !parse_port(dport, &dp) ||
        !v1_address(family, src, sp, &h->src) || !v1_address(family, dst, dp, &unused))
        return PROXYPROTO_BAD;
    h->has_addr = true;
    return PROXYPROTO_DONE;
}

static proxyproto_result parse_v1(const uint8_t *p, size_t n, proxyproto_header *h)
{
    if (n > PROXYPROTO_V1_MAX)
        n = PROXYPROTO_V1_MAX;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n')
            return PROXYPROTO_BAD; /* a bare LF */
        if (p[i] == '\r') {
            if (i + 1 == n)
                return n == PROXYPROTO_V1_MAX ? PROXYPROTO_BAD : PROXYPROTO_MORE;
            if (p[i + 1] != '\n')
                return PROXYPROTO_BAD;
            h->len = i + 2;
            return v1_line((const char *)p, i, h);
        }
        if (p[i] < 0x20 || p[i] > 0x7e)
            return PROXYPROTO_BAD;
    }
    return n == PROXYPROTO_V1_MAX ? PROXYPROTO_BAD : PROXYPROTO_MORE;
}

/* ---- version 2: a 16-byte head, then the address block and TLVs ---- */

static proxyproto_result v2_address(const uint8_t *p, size_t n, proxyproto_header *h)
{
    int family = p[13] >> 4, transport = p[13] & 0x0f;
    size_t block = (size_t)p[14] << 8 | p[15];
    size_t need = family == 1 ? 12 : family == 2 ? 36 : 0;
    if (family > 3 || transport > 2 || block < (family == 3 ? 216 : need))
        return PROXYPROTO_BAD;
    if (need == 0 || transport != 1)
        return PROXYPROTO_DONE; /* UNSPEC, UNIX or not a stream: the peer's own address */
    if (n < V2_HEAD + need)
        return PROXYPROTO_MORE;
    const uint8_t *a = p + V2_HEAD;
    memset(&h->src, 0, sizeof(h->src));
    if (family == 1) {
        struct sockaddr_in *in = (struct sockaddr_in *)&h->src;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, a, 4);
        memcpy(&in->sin_port, a + 8, 2);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&h->src;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, a, 16);
        memcpy(&in6->sin6_port, a + 32, 2);
    }
    h->has_addr = true;
    return PROXYPROTO_DONE;
}

static proxyproto_result parse_v2(const uint8_t *p, size_t n, proxyproto_header *h)
{
    if (n < V2_HEAD)
        return PROXYPROTO_MORE;
    int version = p[12] >> 4, command = p[12] & 0x0f;
    if (version != 2 || command > 1)
        return PROXYPROTO_BAD;
    h->len = V2_HEAD + ((size_t)p[14] << 8 | p[15]);
    if (command == 0)
        return PROXYPROTO_DONE; /* LOCAL: the balancer's own connection (a health check) */
    return v2_address(p, n, h);
}

proxyproto_result proxyproto_parse(const uint8_t *p, size_t n, proxyproto_header *h)
{
    memset(h, 0, sizeof(*h));
    if (n > PROXYPROTO_PARSE_MAX)
        n = PROXYPROTO_PARSE_MAX;
    size_t sig = n < sizeof(v2_sig) ? n : sizeof(v2_sig);
    if (n > 0 && p[0] == '\r') {
        if (memcmp(p, v2_sig, sig) != 0)
            return PROXYPROTO_BAD;
        return n < sizeof(v2_sig) ? PROXYPROTO_MORE : parse_v2(p, n, h);
    }
    size_t pre = n < 6 ? n : 6;
    if (memcmp(p, "PROXY ", pre) != 0)
        return PROXYPROTO_BAD;
    return n < 6 ? PROXYPROTO_MORE : parse_v1(p, n, h);
}
