/* Strict incremental HTTP/1.1 parser (RFC 9112): a resumable head scanner over the caller's
 * buffer, and a byte-split-resilient decoder for Content-Length and chunked bodies. */
#include "shared/http_parser.h"
#include "shared/percent.h"

#include <arpa/inet.h>
#include <string.h>

/* Chunked decoder states (p->body_state). CH_SIZE is 0 so a reset parser starts there. */
enum {
    CH_SIZE,         /* hex digits of a chunk size */
    CH_SIZE_LF,      /* CR of the size line seen, LF expected */
    EXT_NAME_START,  /* after ';': first tchar of an extension name */
    EXT_NAME,        /* inside an extension name */
    EXT_VAL_START,   /* after '=': token or quoted string */
    EXT_TOKEN,       /* inside a token value */
    EXT_QUOTED,      /* inside a quoted-string value */
    EXT_QUOTED_ESC,  /* after a backslash in a quoted string */
    EXT_AFTER_QUOTE, /* closing quote seen */
    CH_DATA,         /* chunk data, p->remaining bytes left */
    CH_DATA_CR,      /* CR after chunk data expected */
    CH_DATA_LF,      /* LF after chunk data expected */
    TR_LINE_START,   /* start of a trailer line (or of the final CRLF) */
    TR_NAME,         /* inside a trailer field name */
    TR_VALUE,        /* inside a trailer field value */
    TR_LINE_LF,      /* CR of a trailer line seen */
    TR_END_LF,       /* CR of the final empty line seen */
    CH_DONE,         /* message complete */
};

static const char *const error_reasons[HTTP_E__COUNT] = {
    [HTTP_OK] = "OK",
    [HTTP_E_BAD_METHOD] = "method is not a token",
    [HTTP_E_BAD_TARGET] = "request target has a byte outside VCHAR",
    [HTTP_E_BAD_REQUEST_LINE] = "malformed request line",
    [HTTP_E_URI_TOO_LONG] = "request line too long",
    [HTTP_E_BAD_VERSION] = "malformed HTTP version",
    [HTTP_E_VERSION_UNSUPPORTED] = "HTTP version not supported",
    [HTTP_E_BAD_STATUS_LINE] = "malformed status line",
    [HTTP_E_BARE_LF] = "line ended by LF without CR",
    [HTTP_E_BARE_CR] = "CR not followed by LF",
    [HTTP_E_CTL_CHAR] = "control byte in start line or field",
    [HTTP_E_OBS_FOLD] = "obsolete line folding",
    [HTTP_E_BAD_HEADER_NAME] = "field name is not a token",
    [HTTP_E_SPACE_BEFORE_COLON] = "whitespace between field name and colon",
    [HTTP_E_NO_COLON] = "field line without colon",
    [HTTP_E_HEADERS_TOO_LARGE] = "header section too large",
    [HTTP_E_TOO_MANY_HEADERS] = "too many header fields",
    [HTTP_E_NO_HOST] = "HTTP/1.1 request without Host",
    [HTTP_E_DUP_HOST] = "more than one Host field",
    [HTTP_E_CL_AND_TE] = "Content-Length with Transfer-Encoding",
    [HTTP_E_DUP_CL] = "more than one Content-Length",
    [HTTP_E_BAD_CL] = "invalid Content-Length",
    [HTTP_E_TE_NOT_CHUNKED] = "final transfer coding is not chunked",
    [HTTP_E_TE_CHUNKED_TWICE] = "chunked applied more than once",
    [HTTP_E_TE_UNKNOWN] = "transfer coding not implemented",
    [HTTP_E_TE_HTTP10] = "Transfer-Encoding in HTTP/1.0",
    [HTTP_E_TE_EMPTY_ELEMENT] = "empty element in Transfer-Encoding list",
    [HTTP_E_BAD_HOST] = "Host is not uri-host [\":\" port]",
    [HTTP_E_BODY_TOO_LARGE] = "body too large",
    [HTTP_E_BAD_CHUNK_SIZE] = "invalid chunk size",
    [HTTP_E_BAD_CHUNK_EXT] = "invalid chunk extension",
    [HTTP_E_CHUNK_EXT_TOO_LONG] = "chunk extension too long",
    [HTTP_E_BAD_CHUNK_END] = "chunk not ended by CRLF",
    [HTTP_E_BAD_TRAILER] = "invalid trailer section",
};

void http_limits_default(http_limits *limits)
{
    limits->max_request_line = 8192;
    limits->max_header_count = 100;
    limits->max_header_bytes = 16384;
    limits->max_chunk_ext = 1024;
    limits->max_body = 1024 * 1024;
}

int http_error_status(http_error err)
{
    switch (err) {
    case HTTP_OK:
        return 200;
    case HTTP_E_URI_TOO_LONG:
        return 414;
    case HTTP_E_HEADERS_TOO_LARGE:
    case HTTP_E_TOO_MANY_HEADERS:
        return 431;
    case HTTP_E_BODY_TOO_LARGE:
        return 413;
    case HTTP_E_TE_UNKNOWN:
        return 501;
    case HTTP_E_VERSION_UNSUPPORTED:
        return 505;
    default:
        return 400;
    }
}

const char *http_error_reason(http_error err)
{
    if ((unsigned)err >= HTTP_E__COUNT)
        return "unknown error";
    return error_reasons[err];
}

/* ---- character classes ---- */

/* One bit per ASCII byte: DIGIT, ALPHA and !#$%&'*+-.^_`|~ (a bit set is checked on every byte
 * of every name and method, so it is worth not calling strchr). */
static const uint64_t tchar_bits[2] = {0x03ff6cfa00000000u, 0x57ffffffc7fffffeu};

bool http_is_tchar(unsigned char c)
{
    return c < 128 && (tchar_bits[c >> 6] >> (c & 63) & 1);
}

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* VCHAR, obs-text, SP and HTAB: what a field value (and a reason phrase) may hold. */
static bool is_field_byte(unsigned char c)
{
    return c == '\t' || !is_ctl(c);
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool mem_eq_ci(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static http_span make_span(size_t off, size_t len)
{
    /* Heads are capped below UINT32_MAX bytes (see head_limit), so these never truncate. */
    return (http_span){.off = (uint32_t)off, .len = (uint32_t)len};
}

/* ---- public helpers ---- */

bool http_span_eq(const char *buf, http_span s, const char *text)
{
    size_t n = strlen(text);
    return s.len == n && memcmp(buf + s.off, text, n) == 0;
}

bool http_span_eq_ci(const char *buf, http_span s, const char *text)
{
    size_t n = strlen(text);
    return s.len == n && mem_eq_ci(buf + s.off, text, n);
}

const http_header *http_find_header(const http_parser *p, const char *buf, const char *name)
{
    for (size_t i = 0; i < p->header_count; i++)
        if (http_span_eq_ci(buf, p->headers[i].name, name))
            return &p->headers[i];
    return NULL;
}

/* Calls fn on each comma-separated element with OWS trimmed, empty ones included: RFC 9110 5.6.1
 * asks recipients to ignore them, and fn does, except where framing depends on the list.
 * Stops at the first non-zero return and gives it. */
typedef int (*list_fn)(const char *elem, size_t len, void *ctx);

static int list_each(const char *value, size_t len, list_fn fn, void *ctx)
{
    size_t i = 0;
    while (i <= len) {
        const char *comma = memchr(value + i, ',', len - i);
        size_t end = comma ? (size_t)(comma - value) : len;
        size_t a = i, b = end;
        while (a < b && is_ows((unsigned char)value[a]))
            a++;
        while (b > a && is_ows((unsigned char)value[b - 1]))
            b--;
        int r = fn(value + a, b - a, ctx);
        if (r)
            return r;
        i = end + 1;
    }
    return 0;
}

static int token_matches(const char *elem, size_t len, void *ctx)
{
    const char *token = ctx;
    return strlen(token) == len && mem_eq_ci(elem, token, len);
}

bool http_list_has_token(const char *value, size_t len, const char *token)
{
    return list_each(value, len, token_matches, (void *)token) != 0;
}

/* ---- init ---- */

void http_parser_init(http_parser *p, http_kind kind, const http_limits *limits,
                      http_header *headers, size_t header_cap)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    if (limits)
        p->limits = *limits;
    else
        http_limits_default(&p->limits);
    p->headers = headers;
    p->header_cap = header_cap;
}

void http_parser_reset(http_parser *p)
{
    /* Copy first: init zeroes *p, limits included. */
    http_limits limits = p->limits;
    http_parser_init(p, p->kind, &limits, p->headers, p->header_cap);
}

static http_parse_result fail(http_parser *p, http_error err)
{
    p->error = err;
    return HTTP_PARSE_ERROR;
}

/* ---- head: start line ---- */

/* Refuses CR and control bytes anywhere in a line; HTAB only where allowed. In the request line
 * an HTAB can only be a separator someone hoped we would accept, hence a request-line error. */
static http_error check_line_bytes(const char *buf, size_t from, size_t to, bool tab_ok)
{
    for (size_t i = from; i < to; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\r')
            return HTTP_E_BARE_CR;
        if (c == '\t' && !tab_ok)
            return HTTP_E_BAD_REQUEST_LINE;
        if (c != '\t' && is_ctl(c))
            return HTTP_E_CTL_CHAR;
    }
    return HTTP_OK;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Exactly "HTTP/" DIGIT "." DIGIT; only 1.0 and 1.1 are spoken. */
static http_error parse_version(http_parser *p, const char *s, size_t n)
{
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || !is_digit((unsigned char)s[5]) || s[6] != '.' ||
        !is_digit((unsigned char)s[7]))
        return HTTP_E_BAD_VERSION;
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
        return HTTP_E_VERSION_UNSUPPORTED;
    p->version_minor = s[7] - '0';
    return HTTP_OK;
}

/* METHOD SP TARGET SP VERSION, one SP each, nothing else, in buf[ls, end). */
static http_error request_line(http_parser *p, const char *buf, size_t ls, size_t end)
{
    http_error e = check_line_bytes(buf, ls, end, false);
    if (e)
        return e;
    size_t i = ls;
    while (i < end && http_is_tchar((unsigned char)buf[i]))
        i++;
    if (i == ls)
        return buf[ls] == ' ' ? HTTP_E_BAD_REQUEST_LINE : HTTP_E_BAD_METHOD;
    if (i == end)
        return HTTP_E_BAD_REQUEST_LINE;
    if (buf[i] != ' ')
        return HTTP_E_BAD_METHOD;
    p->method = make_span(ls, i - ls);
    size_t t = ++i;
    for (; i < end && buf[i] != ' '; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c < 0x21 || c > 0x7e)
            return HTTP_E_BAD_TARGET;
    }
    if (i == t || i == end)
        return HTTP_E_BAD_REQUEST_LINE; /* two SPs in a row, or no version */
    p->target = make_span(t, i - t);
    i++;
    if (i == end || memchr(buf + i, ' ', end - i))
        return HTTP_E_BAD_REQUEST_LINE;
    return parse_version(p, buf + i, end - i);
}

/* HTTP-version SP 3DIGIT [SP reason]. The SP before an empty reason is optional: RFC 9112
 * requires it, but senders that drop it are common and the framing does not depend on it. */
static http_error status_line(http_parser *p, const char *buf, size_t end)
{
    http_error e = check_line_bytes(buf, 0, end, true);
    if (e)
        return e;
    const char *sp = memchr(buf, ' ', end);
    if (!sp)
        return HTTP_E_BAD_STATUS_LINE;
    size_t v = (size_t)(sp - buf);
    e = parse_version(p, buf, v);
    if (e)
        return e;
    if (end - v < 4)
        return HTTP_E_BAD_STATUS_LINE;
    const unsigned char *d = (const unsigned char *)buf + v + 1;
    if (!is_digit(d[0]) || !is_digit(d[1]) || !is_digit(d[2]))
        return HTTP_E_BAD_STATUS_LINE;
    int status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    if (status < 100 || status > 599)
        return HTTP_E_BAD_STATUS_LINE;
    size_t r = v + 4;
    if (r < end && buf[r] != ' ')
        return HTTP_E_BAD_STATUS_LINE;
    p->status = status;
    p->reason = r < end ? make_span(r + 1, end - r - 1) : make_span(r, 0);
    return HTTP_OK;
}

/* ---- head: field lines ---- */

static http_error parse_content_length(http_parser *p, const char *s, size_t n)
{
    if (n == 0)
        return HTTP_E_BAD_CL;
    if (memchr(s, ',', n))
        return HTTP_E_DUP_CL; /* "5, 5" is two values, however equal */
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_digit(c))
            return HTTP_E_BAD_CL;
        if (v > (UINT64_MAX - (c - '0')) / 10)
            return HTTP_E_BAD_CL;
        v = v * 10 + (c - '0');
    }
    p->content_length = v;
    return HTTP_OK;
}

/* One transfer coding. Anything but a bare "chunked" (parameters included) is a coding we do
 * not implement; whether that means 400 or 501 is decided once the whole list is known. An
 * empty element is refused: a peer that skips it and one that does not may disagree on which
 * coding is last, and that disagreement is how bodies get smuggled. */
static int te_element(const char *elem, size_t len, void *ctx)
{
    http_parser *p = ctx;
    if (len == 0)
        return HTTP_E_TE_EMPTY_ELEMENT;
    if (len == 7 && mem_eq_ci(elem, "chunked", 7)) {
        if (p->te_has_chunked)
            return HTTP_E_TE_CHUNKED_TWICE;
        p->te_has_chunked = true;
        p->te_chunked = true;
    } else {
        p->te_chunked = false;
        p->te_other = true;
    }
    return 0;
}

static http_error transfer_encoding(http_parser *p, const char *s, size_t n)
{
    if (p->cl_count)
        return HTTP_E_CL_AND_TE;
    if (p->version_minor == 0)
        return HTTP_E_TE_HTTP10;
    p->te_seen = true;
    if (n == 0)
        return HTTP_OK; /* no coding at all: refused as not chunked once the head is complete */
    return (http_error)list_each(s, n, te_element, p);
}

static http_error content_length(http_parser *p, const char *s, size_t n)
{
    if (p->te_seen)
        return HTTP_E_CL_AND_TE;
    if (++p->cl_count > 1)
        return HTTP_E_DUP_CL;
    return parse_content_length(p, s, n);
}

/* RFC 3986 unreserved and sub-delims: what a reg-name holds besides pct-encoded bytes. */
static bool is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
           (c != 0 && strchr("-._~!$&'()*+,;=", c));
}

/* IPvFuture ("v" 1*HEXDIG "." 1*(unreserved / sub-delims / ":")) or an IPv6 address. */
static bool ip_literal(const char *s, size_t n)
{
    if (n > 0 && (s[0] == 'v' || s[0] == 'V')) {
        size_t i = 1;
        while (i < n && percent_hex_digit((unsigned char)s[i]) >= 0)
            i++;
        if (i == 1 || i + 1 >= n || s[i] != '.')
            return false;
        for (i++; i < n; i++)
            if (s[i] != ':' && !is_host_char((unsigned char)s[i]))
                return false;
        return true;
    }
    char text[INET6_ADDRSTRLEN];
    struct in6_addr addr;
    if (n == 0 || n >= sizeof(text))
        return false;
    memcpy(text, s, n);
    text[n] = 0;
    return inet_pton(AF_INET6, text, &addr) == 1;
}

/* Index of the first byte of s that does not continue a reg-name (or n). */
static size_t reg_name_end(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] == '%' && percent_escape(s + i, n - i) >= 0)
            i += 3;
        else if (is_host_char((unsigned char)s[i]))
            i++;
        else
            break;
    }
    return i;
}

/* Host = uri-host [":" port] (RFC 9110 7.2). The value names the site and is passed on to
 * applications, so anything outside the grammar (a slash, a quote, a second colon) is refused
 * here once rather than by each reader. An empty value is valid: a target without authority. */
static http_error host_field(http_parser *p, const char *s, size_t n)
{
    if (++p->host_count > 1)
        return HTTP_E_DUP_HOST;
    size_t i;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || !ip_literal(s + 1, (size_t)(close - s) - 1))
            return HTTP_E_BAD_HOST;
        i = (size_t)(close - s) + 1;
    } else {
        i = reg_name_end(s, n);
    }
    if (i == n)
        return HTTP_OK;
    if (s[i] != ':')
        return HTTP_E_BAD_HOST;
    for (i++; i < n; i++)
        if (!is_digit((unsigned char)s[i]))
            return HTTP_E_BAD_HOST;
    return HTTP_OK;
}

static void connection(http_parser *p, const char *s, size_t n)
{
    p->conn_close |= http_list_has_token(s, n, "close");
    p->conn_keep_alive |= http_list_has_token(s, n, "keep-alive");
    p->conn_upgrade |= http_list_has_token(s, n, "upgrade");
}

/* The fields that decide framing, routing and connection reuse. */
static http_error field_semantics(http_parser *p, const char *buf, const http_header *h)
{
    const char *v = buf + h->value.off;
    size_t n = h->value.len;
    if (http_span_eq_ci(buf, h->name, "content-length"))
        return content_length(p, v, n);
    if (http_span_eq_ci(buf, h->name, "transfer-encoding"))
        return transfer_encoding(p, v, n);
    if (http_span_eq_ci(buf, h->name, "host") && p->kind == HTTP_KIND_REQUEST)
        return host_field(p, v, n);
    if (http_span_eq_ci(buf, h->name, "connection")) {
        connection(p, v, n);
    } else if (http_span_eq_ci(buf, h->name, "upgrade")) {
        p->upgrade_seen = true;
    } else if (http_span_eq_ci(buf, h->name, "expect") && p->kind == HTTP_KIND_REQUEST) {
        /* RFC 9110 10.1.1: an HTTP/1.0 client cannot read a 100, so ignore its expectation. */
        p->expect_continue = p->version_minor == 1 && n == 12 && mem_eq_ci(v, "100-continue", 12);
    }
    return HTTP_OK;
}

/* Why a field line without a clean "token:" start is refused. */
static http_error bad_name(const char *buf, size_t name_end, size_t end)
{
    const char *colon = memchr(buf + name_end, ':', end - name_end);
    if (!colon)
        return HTTP_E_NO_COLON;
    size_t i = name_end;
    while (i < end && is_ows((unsigned char)buf[i]))
        i++;
    if (i > name_end && buf + i == colon)
        return HTTP_E_SPACE_BEFORE_COLON;
    return HTTP_E_BAD_HEADER_NAME;
}

static size_t header_limit(const http_parser *p)
{
    return min_size(p->header_cap, p->limits.max_header_count);
}

static http_error field_line(http_parser *p, const char *buf, size_t ls, size_t end)
{
    if (is_ows((unsigned char)buf[ls]))
        return HTTP_E_OBS_FOLD;
    http_error e = check_line_bytes(buf, ls, end, true);
    if (e)
        return e;
    size_t i = ls;
    while (i < end && http_is_tchar((unsigned char)buf[i]))
        i++;
    if (i == ls || i == end || buf[i] != ':')
        return bad_name(buf, i, end);
    size_t v = i + 1, ve = end;
    while (v < ve && is_ows((unsigned char)buf[v]))
        v++;
    while (ve > v && is_ows((unsigned char)buf[ve - 1]))
        ve--;
    if (p->header_count >= header_limit(p))
        return HTTP_E_TOO_MANY_HEADERS;
    http_header *h = &p->headers[p->header_count++];
    h->name = make_span(ls, i - ls);
    h->value = make_span(v, ve - v);
    return field_semantics(p, buf, h);
}

/* ---- head: end of head ---- */

static bool response_has_no_body(const http_parser *p)
{
    return p->response_to_head || p->status < 200 || p->status == 204 || p->status == 304;
}

static http_error choose_framing(http_parser *p)
{
    bool request = p->kind == HTTP_KIND_REQUEST;
    if (!request && response_has_no_body(p)) {
        p->body_kind = HTTP_BODY_NONE;
    } else if (p->te_seen) {
        p->body_kind = HTTP_BODY_CHUNKED;
    } else if (p->cl_count) {
        p->body_kind = HTTP_BODY_LENGTH;
        p->remaining = p->content_length;
        /* 413 is a request status; response bodies are the caller's business. */
        if (request && p->limits.max_body && p->content_length > p->limits.max_body)
            return HTTP_E_BODY_TOO_LARGE;
    } else {
        p->body_kind = request ? HTTP_BODY_NONE : HTTP_BODY_UNTIL_CLOSE;
    }
    return HTTP_OK;
}

static http_error finish_head(http_parser *p, size_t head_len)
{
    p->head_len = head_len;
    if (p->kind == HTTP_KIND_REQUEST && p->version_minor == 1 && p->host_count == 0)
        return HTTP_E_NO_HOST;
    if (p->te_seen && !p->te_chunked)
        return HTTP_E_TE_NOT_CHUNKED;
    if (p->te_seen && p->te_other)
        return HTTP_E_TE_UNKNOWN;
    http_error e = choose_framing(p);
    if (e)
        return e;
    if (p->version_minor == 1)
        p->keep_alive = !p->conn_close;
    else
        p->keep_alive = p->conn_keep_alive && !p->conn_close;
    if (p->body_kind == HTTP_BODY_UNTIL_CLOSE)
        p->keep_alive = false;
    p->upgrade = p->conn_upgrade && p->upgrade_seen;
    p->head_done = true;
    p->body_state = CH_SIZE;
    p->scan = 0;
    return HTTP_OK;
}

/* ---- head: the request line as it arrives ---- */

enum { RL_METHOD, RL_TARGET, RL_VERSION };

/* The start line of a request is being scanned. */
static bool in_request_line(const http_parser *p)
{
    return p->kind == HTTP_KIND_REQUEST && p->line_start == p->start_line;
}

/* One byte of a request line (not CR or LF): the error it proves, or HTTP_OK. The version is
 * only counted here (its form is checked with the line end), so that "GET /a b HTTP/1.1" is a
 * request-line error, as it is for the whole line. */
static http_error request_line_byte(http_parser *p, unsigned char c)
{
    if (c == '\t')
        return HTTP_E_BAD_REQUEST_LINE;
    if (is_ctl(c))
        return HTTP_E_CTL_CHAR;
    if (c == ' ') {
        if (p->rl_len == 0 || p->rl_part == RL_VERSION)
            return HTTP_E_BAD_REQUEST_LINE;
        p->rl_part++;
        p->rl_len = 0;
        return HTTP_OK;
    }
    p->rl_len++;
    if (p->rl_part == RL_METHOD && !http_is_tchar(c))
        return HTTP_E_BAD_METHOD;
    if (p->rl_part == RL_TARGET && c > 0x7e)
        return HTTP_E_BAD_TARGET;
    if (p->rl_part == RL_VERSION && p->rl_len > 8)
        return HTTP_E_BAD_VERSION;
    return HTTP_OK;
}

/* Judges buf[from, to) of the request line before its end is known, so a peer whose bytes can
 * never form one (binary, TLS on the plain port) is refused at the first of them instead of
 * holding its connection until the header timeout. Every byte of the line passes here, in
 * order, whatever the reads were: the first bad byte decides, however the head was split. */
static http_error request_line_prefix(http_parser *p, const char *buf, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (i > p->line_start && buf[i - 1] == '\r')
            return HTTP_E_BARE_CR; /* the CR before this byte did not end the line */
        if (c == '\r')
            continue; /* the line end, if LF comes next */
        http_error e = request_line_byte(p, c);
        if (e)
            return e;
    }
    return HTTP_OK;
}

/* The first line: a request or status line. Empty lines before a request line are skipped, as
 * RFC 9112 2.2 asks of servers (clients send a stray CRLF after a body); the head limit still
 * bounds how many. */
static http_error start_line(http_parser *p, const char *buf, size_t ls, size_t end)
{
    bool request = p->kind == HTTP_KIND_REQUEST;
    if (end == ls && request) {
        p->start_line = p->line_start;
        return HTTP_OK;
    }
    if (end == ls)
        return HTTP_E_BAD_STATUS_LINE;
    return request ? request_line(p, buf, ls, end) : status_line(p, buf, end);
}

/* A complete line buf[line_start, lf) has arrived, lf being the index of its LF. */
static http_error head_line(http_parser *p, const char *buf, size_t lf)
{
    size_t ls = p->line_start;
    p->line_start = lf + 1;
    if (lf == ls || buf[lf - 1] != '\r')
        return HTTP_E_BARE_LF;
    size_t end = lf - 1;
    if (ls == p->start_line)
        return start_line(p, buf, ls, end);
    if (end == ls)
        return finish_head(p, lf + 1);
    return field_line(p, buf, ls, end);
}

/* Spans are 32-bit offsets, so a head can never be allowed to outgrow them. */
static size_t head_limit(const http_parser *p)
{
    return min_size(p->limits.max_header_bytes, UINT32_MAX - 1);
}

/* Advances p->pos to just past the next LF (*lf = its index) or to len (*lf = len), checking
 * the size limits byte by byte at their edges. Below the edges memchr does the work. */
static http_error find_line_end(http_parser *p, const char *buf, size_t len, size_t *lf)
{
    size_t max_head = head_limit(p);
    bool req_line = p->kind == HTTP_KIND_REQUEST && p->line_start == p->start_line;
    size_t max_line = p->start_line + p->limits.max_request_line;
    for (;;) {
        size_t safe = min_size(len, max_head);
        if (req_line)
            safe = min_size(safe, max_line);
        if (p->pos < safe) {
            const char *hit = memchr(buf + p->pos, '\n', safe - p->pos);
            if (hit) {
                *lf = (size_t)(hit - buf);
                p->pos = *lf + 1;
                return HTTP_OK;
            }
            p->pos = safe;
        }
        if (p->pos >= len) {
            *lf = len;
            return HTTP_OK;
        }
        unsigned char c = (unsigned char)buf[p->pos];
        /* Byte max_line may still be the CR ending a line of exactly max_line bytes. */
        if (req_line && c != '\n' && (p->pos > max_line || (p->pos == max_line && c != '\r')))
            return HTTP_E_URI_TOO_LONG;
        if (p->pos >= max_head)
            return HTTP_E_HEADERS_TOO_LARGE;
        p->pos++;
        if (c == '\n') {
            *lf = p->pos - 1;
            return HTTP_OK;
        }
    }
}

http_parse_result http_parse_head(http_parser *p, const char *buf, size_t len)
{
    if (p->error)
        return HTTP_PARSE_ERROR;
    if (p->head_done)
        return HTTP_PARSE_DONE;
    while (p->pos < len) {
        size_t lf = len, from = p->pos;
        bool start = in_request_line(p);
        http_error e = find_line_end(p, buf, len, &lf);
        if (start) {
            /* the bytes before a limit was hit, or before the line end, come first */
            http_error pe = request_line_prefix(p, buf, from, e ? p->pos : lf);
            if (pe)
                return fail(p, pe);
        }
        if (e)
            return fail(p, e);
        if (lf == len)
            break;
        e = head_line(p, buf, lf);
        if (e)
            return fail(p, e);
        if (p->head_done)
            return HTTP_PARSE_DONE;
    }
    return HTTP_PARSE_AGAIN;
}

/* ---- body: chunked framing, one byte at a time ---- */

static http_error chunk_size_byte(http_parser *p, unsigned char c)
{
    int v = percent_hex_digit(c);
    if (v >= 0) {
        if (p->scan == 16)
            return HTTP_E_BAD_CHUNK_SIZE; /* would overflow 64 bits, or is padding */
        p->remaining = (p->remaining << 4) | (uint64_t)v;
        p->scan++;
        return HTTP_OK;
    }
    if (p->scan == 0)
        return HTTP_E_BAD_CHUNK_SIZE;
    if (c == '\r') {
        p->body_state = CH_SIZE_LF;
    } else if (c == ';') {
        /* No BWS before ';': strictness beats the RFC's leniency here. */
        p->scan = 1;
        if (p->scan > p->limits.max_chunk_ext)
            return HTTP_E_CHUNK_EXT_TOO_LONG;
        p->body_state = EXT_NAME_START;
    } else {
        return c == '\n' ? HTTP_E_BAD_CHUNK_END : HTTP_E_BAD_CHUNK_SIZE;
    }
    return HTTP_OK;
}

static bool is_qdtext(unsigned char c)
{
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

/* Next state for one extension byte, or -1 when it does not fit the grammar
 * *( ";" name [ "=" ( token / quoted-string ) ] ), BWS not accepted. */
static int chunk_ext_next(int state, unsigned char c)
{
    bool t = http_is_tchar(c);
    switch (state) {
    case EXT_NAME_START:
        return t ? EXT_NAME : -1;
    case EXT_NAME:
        return t ? EXT_NAME : c == ';' ? EXT_NAME_START : c == '=' ? EXT_VAL_START : -1;
    case EXT_VAL_START:
        return t ? EXT_TOKEN : c == '"' ? EXT_QUOTED : -1;
    case EXT_TOKEN:
        return t ? EXT_TOKEN : c == ';' ? EXT_NAME_START : -1;
    case EXT_QUOTED:
        return c == '"'       ? EXT_AFTER_QUOTE
               : c == '\\'    ? EXT_QUOTED_ESC
               : is_qdtext(c) ? EXT_QUOTED
                              : -1;
    case EXT_QUOTED_ESC:
        return is_field_byte(c) ? EXT_QUOTED : -1;
    case EXT_AFTER_QUOTE:
        return c == ';' ? EXT_NAME_START : -1;
    default:
        return -1;
    }
}

static http_error chunk_ext_byte(http_parser *p, unsigned char c)
{
    if (c == '\n')
        return HTTP_E_BAD_CHUNK_END;
    if (c == '\r') {
        int s = p->body_state;
        if (s != EXT_NAME && s != EXT_TOKEN && s != EXT_AFTER_QUOTE)
            return HTTP_E_BAD_CHUNK_EXT;
        p->body_state = CH_SIZE_LF;
        return HTTP_OK;
    }
    if (++p->scan > p->limits.max_chunk_ext)
        return HTTP_E_CHUNK_EXT_TOO_LONG;
    int next = chunk_ext_next(p->body_state, c);
    if (next < 0)
        return HTTP_E_BAD_CHUNK_EXT;
    p->body_state = next;
    return HTTP_OK;
}

/* The size line is complete: the last chunk leads to the trailer, others to their data. */
static http_error chunk_size_done(http_parser *p)
{
    uint64_t max = p->limits.max_body;
    p->scan = 0;
    if (p->remaining == 0) {
        p->body_state = TR_LINE_START;
        return HTTP_OK;
    }
    if (p->kind == HTTP_KIND_REQUEST && max && p->remaining > max - p->body_total)
        return HTTP_E_BODY_TOO_LARGE;
    p->body_total =
        p->remaining > UINT64_MAX - p->body_total ? UINT64_MAX : p->body_total + p->remaining;
    p->body_state = CH_DATA;
    return HTTP_OK;
}

/* Trailer fields are checked for shape, counted and measured against the head's limits, and
 * discarded unless the caller keeps them (keep_trailer): the parser has no memory of its own. */
static http_error trailer_byte(http_parser *p, unsigned char c)
{
    if (++p->scan > head_limit(p))
        return HTTP_E_HEADERS_TOO_LARGE;
    switch (p->body_state) {
    case TR_LINE_START:
        if (c == '\r') {
            p->body_state = TR_END_LF;
            return HTTP_OK;
        }
        if (!http_is_tchar(c))
            return HTTP_E_BAD_TRAILER;
        if (++p->trailer_count > p->limits.max_header_count)
            return HTTP_E_TOO_MANY_HEADERS;
        p->body_state = TR_NAME;
        return HTTP_OK;
    case TR_NAME:
        if (c == ':')
            p->body_state = TR_VALUE;
        return c == ':' || http_is_tchar(c) ? HTTP_OK : HTTP_E_BAD_TRAILER;
    case TR_VALUE:
        if (c == '\r')
            p->body_state = TR_LINE_LF;
        return c == '\r' || is_field_byte(c) ? HTTP_OK : HTTP_E_BAD_TRAILER;
    case TR_LINE_LF:
        p->body_state = TR_LINE_START;
        return c == '\n' ? HTTP_OK : HTTP_E_BAD_TRAILER;
    default: /* TR_END_LF */
        p->body_state = CH_DONE;
        return c == '\n' ? HTTP_OK : HTTP_E_BAD_TRAILER;
    }
}

static http_error chunk_byte(http_parser *p, unsigned char c)
{
    switch (p->body_state) {
    case CH_SIZE:
        return chunk_size_byte(p, c);
    case CH_SIZE_LF:
        return c == '\n' ? chunk_size_done(p) : HTTP_E_BAD_CHUNK_END;
    case CH_DATA_CR:
        p->body_state = CH_DATA_LF;
        return c == '\r' ? HTTP_OK : HTTP_E_BAD_CHUNK_END;
    case CH_DATA_LF:
        p->body_state = CH_SIZE;
        p->remaining = 0;
        p->scan = 0;
        return c == '\n' ? HTTP_OK : HTTP_E_BAD_CHUNK_END;
    case TR_LINE_START:
    case TR_NAME:
    case TR_VALUE:
    case TR_LINE_LF:
    case TR_END_LF:
        return trailer_byte(p, c);
    default:
        return chunk_ext_byte(p, c);
    }
}

/* A byte of a trailer field line (not of the empty line that ends the section). */
static bool in_trailer_line(const http_parser *p, unsigned char c)
{
    switch (p->body_state) {
    case TR_LINE_START:
        return c != '\r';
    case TR_NAME:
    case TR_VALUE:
    case TR_LINE_LF:
        return true;
    default:
        return false;
    }
}

/* With keep_trailer, the field lines are handed out as they are checked: in[from, *consumed). */
static http_parse_result trailer_lines(http_parser *p, const char *in, size_t len, size_t from,
                                       size_t *consumed, const char **data, size_t *data_len)
{
    size_t i = from;
    while (i < len && in_trailer_line(p, (unsigned char)in[i])) {
        http_error e = trailer_byte(p, (unsigned char)in[i]);
        if (e) {
            *consumed = i;
            return fail(p, e);
        }
        i++;
    }
    *data = in + from;
    *data_len = i - from;
    *consumed = i;
    return HTTP_PARSE_TRAILER;
}

static http_parse_result chunked_body(http_parser *p, const char *in, size_t len, size_t *consumed,
                                      const char **data, size_t *data_len)
{
    size_t i = 0;
    while (i < len && p->body_state != CH_DONE) {
        if (p->keep_trailer && in_trailer_line(p, (unsigned char)in[i]))
            return trailer_lines(p, in, len, i, consumed, data, data_len);
        if (p->body_state == CH_DATA) {
            size_t n = (size_t)(p->remaining < len - i ? p->remaining : len - i);
            *data = in + i;
            *data_len = n;
            p->remaining -= n;
            if (p->remaining == 0)
                p->body_state = CH_DATA_CR;
            *consumed = i + n;
            return HTTP_PARSE_DATA;
        }
        http_error e = chunk_byte(p, (unsigned char)in[i]);
        if (e) {
            *consumed = i;
            return fail(p, e);
        }
        i++;
    }
    *consumed = i;
    return p->body_state == CH_DONE ? HTTP_PARSE_DONE : HTTP_PARSE_AGAIN;
}

static http_parse_result emit(const char *in, size_t n, size_t *consumed, const char **data,
                              size_t *data_len)
{
    *data = in;
    *data_len = n;
    *consumed = n;
    return HTTP_PARSE_DATA;
}

http_parse_result http_parse_body(http_parser *p, const char *in, size_t len, size_t *consumed,
                                  const char **data, size_t *data_len)
{
    *consumed = 0;
    *data = NULL;
    *data_len = 0;
    if (p->error)
        return HTTP_PARSE_ERROR;
    switch (p->body_kind) {
    case HTTP_BODY_LENGTH: {
        if (p->remaining == 0)
            return HTTP_PARSE_DONE;
        if (len == 0)
            return HTTP_PARSE_AGAIN;
        size_t n = (size_t)(p->remaining < len ? p->remaining : len);
        p->remaining -= n;
        return emit(in, n, consumed, data, data_len);
    }
    case HTTP_BODY_UNTIL_CLOSE:
        return len ? emit(in, len, consumed, data, data_len) : HTTP_PARSE_AGAIN;
    case HTTP_BODY_CHUNKED:
        return chunked_body(p, in, len, consumed, data, data_len);
    default:
        return HTTP_PARSE_DONE;
    }
}

size_t http_trailer_fields(const char *lines, size_t len, http_header *out, size_t cap)
{
    size_t n = 0, ls = 0;
    while (ls < len && n < cap) {
        const char *lf = memchr(lines + ls, '\n', len - ls);
        size_t end = lf ? (size_t)(lf - lines) : len; /* the LF; its CR is before it */
        const char *colon = memchr(lines + ls, ':', end - ls);
        if (!colon)
            break;
        size_t c = (size_t)(colon - lines), v = c + 1,
               ve = end > v && lines[end - 1] == '\r' ? end - 1 : end;
        while (v < ve && is_ows((unsigned char)lines[v]))
            v++;
        while (ve > v && is_ows((unsigned char)lines[ve - 1]))
            ve--;
        out[n++] = (http_header){.name = make_span(ls, c - ls), .value = make_span(v, ve - v)};
        ls = end + 1;
    }
    return n;
}
