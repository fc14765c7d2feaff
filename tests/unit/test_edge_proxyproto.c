/* The PROXY protocol header parser (edge/proxyproto.c): both versions, every byte split, and
 * the refusals that keep a forged or broken header from naming a client. */
#include "edge/proxyproto.h"
#include "tests/unit/check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const char v2_sig[] = "\r\n\r\n\0\r\nQUIT\n";

static proxyproto_result parse(const void *p, size_t n, proxyproto_header *h)
{
    return proxyproto_parse(p, n, h);
}

/* Every prefix of a complete header is MORE, the whole is DONE with its length. */
static void check_split(const char *what, const uint8_t *p, size_t n, size_t header_len)
{
    proxyproto_header h;
    for (size_t k = 0; k < header_len && k < n; k++)
        CHECK_MSG(parse(p, k, &h) == PROXYPROTO_MORE, "%s: %zu bytes", what, k);
    CHECK_MSG(parse(p, n, &h) == PROXYPROTO_DONE && h.len == header_len, "%s", what);
}

static void test_v1(void)
{
    const char *line = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nGET / HTTP/1.1\r\n";
    size_t hl = strlen("PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n");
    check_split("v1", (const uint8_t *)line, strlen(line), hl);
    proxyproto_header h;
    CHECK(parse(line, strlen(line), &h) == PROXYPROTO_DONE && h.has_addr);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&h.src;
    CHECK(in->sin_family == AF_INET && ntohs(in->sin_port) == 40000 &&
          in->sin_addr.s_addr == htonl(0xc0000207));

    const char *six = "PROXY TCP6 2001:db8::7 ::1 1 65535\r\n";
    CHECK(parse(six, strlen(six), &h) == PROXYPROTO_DONE && h.has_addr &&
          h.src.ss_family == AF_INET6);
    const char *unknown = "PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n";
    CHECK(parse(unknown, strlen(unknown), &h) == PROXYPROTO_DONE && !h.has_addr &&
          h.len == strlen(unknown));
    CHECK(parse("PROXY UNKNOWN\r\n", 15, &h) == PROXYPROTO_DONE && !h.has_addr);

    const char *bad[] = {
        "GET / HTTP/1.1\r\n",
        "proxy TCP4 192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\r",
        "PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2 \r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",
        "PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
        "PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
        "PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 -1 2\r\n",
        "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7\t198.51.100.1 1 2\r\n",
        "PROXY \r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_MSG(parse(bad[i], strlen(bad[i]), &h) == PROXYPROTO_BAD, "%s", bad[i]);
    /* no CRLF within the specification's 107 bytes */
    char longline[200];
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "PROXY ", 6);
    CHECK(parse(longline, 106, &h) == PROXYPROTO_MORE);
    CHECK(parse(longline, 107, &h) == PROXYPROTO_BAD);
    CHECK(parse(longline, sizeof(longline), &h) == PROXYPROTO_BAD);
}

static size_t v2(uint8_t *out, uint8_t cmd, uint8_t fam, const uint8_t *body, size_t len)
{
    memcpy(out, v2_sig, 12);
    out[12] = cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    memcpy(out + 16, body, len);
    return 16 + len;
}

static void test_v2(void)
{
    uint8_t buf[600], body[300] = {0};
    proxyproto_header h;
    /* IPv4 with a TLV after the addresses: DONE once the addresses are in, length whole */
    memcpy(body, "\xc0\x00\x02\x07\x7f\x00\x00\x01\x9c\x40\x01\xbb\x04\x00\x02hi", 17);
    size_t n = v2(buf, 0x21, 0x11, body, 17);
    check_split("v2 inet", buf, 16 + 12, 16 + 17);
    CHECK(parse(buf, 28, &h) == PROXYPROTO_DONE && h.len == 33 && h.has_addr);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&h.src;
    CHECK(in->sin_addr.s_addr == htonl(0xc0000207) && ntohs(in->sin_port) == 40000);
    CHECK(parse(buf, n, &h) == PROXYPROTO_DONE);
    /* IPv6 */
    memset(body, 0, 36);
    body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 7;
    body[32] = 0x01, body[33] = 0x02;
    n = v2(buf, 0x21, 0x21, body, 36);
    CHECK(parse(buf, n - 1, &h) == PROXYPROTO_MORE);
    CHECK(parse(buf, n, &h) == PROXYPROTO_DONE && h.has_addr && h.src.ss_family == AF_INET6 &&
          ntohs(((struct sockaddr_in6 *)&h.src)->sin6_port) == 0x0102);
    /* LOCAL, UNSPEC and datagram: the connection's own address */
    n = v2(buf, 0x20, 0x00, body, 0);
    CHECK(parse(buf, n, &h) == PROXYPROTO_DONE && !h.has_addr && h.len == 16);
    n = v2(buf, 0x21, 0x00, body, 5);
    CHECK(parse(buf, n, &h) == PROXYPROTO_DONE && !h.has_addr && h.len == 21);
    n = v2(buf, 0x21, 0x12, body, 12);
    CHECK(parse(buf, n, &h) == PROXYPROTO_DONE && !h.has_addr);
    n = v2(buf, 0x21, 0x31, body, 216);
    CHECK(parse(buf, n, &h) == PROXYPROTO_DONE && !h.has_addr && h.len == 232);

    /* refusals: version, command, family, transport, a block shorter than its addresses */
    const uint8_t bad[][2] = {{0x11, 0x11}, {0x31, 0x11}, {0x22, 0x11}, {0x21, 0x41},
                              {0x21, 0x13}, {0x21, 0x11}, {0x21, 0x21}, {0x21, 0x31}};
    const size_t lens[] = {12, 12, 12, 12, 12, 11, 35, 215};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        n = v2(buf, bad[i][0], bad[i][1], body, lens[i]);
        CHECK_MSG(parse(buf, n, &h) == PROXYPROTO_BAD, "case %zu", i);
    }
    /* a broken signature is refused as soon as it differs */
    memcpy(buf, v2_sig, 12);
    buf[5] = 'x';
    CHECK(parse(buf, 6, &h) == PROXYPROTO_BAD);
    CHECK(parse(buf, 5, &h) == PROXYPROTO_MORE);
    CHECK(parse("", 0, &h) == PROXYPROTO_MORE);
}

int main(void)
{
    test_v1();
    test_v2();
    return check_summary("edge_proxyproto");
}
