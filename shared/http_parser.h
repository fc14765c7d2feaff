/* Incremental, strict HTTP/1.1 message parser (RFC 9112) for requests and responses.
 * It never allocates: header fields are offsets into the caller's buffer, stored in an
 * array the caller provides. It refuses every framing ambiguity that has enabled request
 * smuggling elsewhere and says exactly why, so the caller can pick 400/413/414/431/501/505.
 * A request line is judged byte by byte as it arrives: bytes that cannot form one are refused
 * at the first of them, not when (or if) a line end comes. */
#ifndef HEARTH_HTTP_PARSER_H
#define HEARTH_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A piece of the caller's buffer, as an offset from the start of the message head, so the
 * caller may move or grow its buffer between calls. */
typedef struct {
    uint32_t off;
    uint32_t len;
} http_span;

typedef struct {
    http_span name;
    http_span value; /* leading and trailing whitespace already trimmed */
} http_header;

typedef enum { HTTP_KIND_REQUEST, HTTP_KIND_RESPONSE } http_kind;

typedef struct {
    size_t max_request_line; /* request line bytes, CRLF excluded: 414 past it (requests) */
    size_t max_header_count; /* fields in the head (and in a chunked trailer): 431 past it;
                                the head also stops at the caller's header_cap */
    size_t max_header_bytes; /* whole head incl. start line and final CRLF (and, separately,
                                the trailer section): 431 past it */
    size_t max_chunk_ext;    /* bytes of chunk extensions on one chunk-size line: 400 */
    uint64_t max_body;       /* decoded request body bytes: 413 past it; 0 = no limit.
                                Responses are not limited: 413 is a request status. */
} http_limits;

/* Defaults: request line 8 KiB, 100 fields, 16 KiB head, 1 KiB chunk extensions, 1 MiB body. */
void http_limits_default(http_limits *limits);

/* Why a message was refused. http_error_status() maps each to the status to answer with. */
typedef enum {
    HTTP_OK = 0,
    HTTP_E_BAD_METHOD,          /* method is not a token */
    HTTP_E_BAD_TARGET,          /* request target has a byte outside 0x21-0x7E */
    HTTP_E_BAD_REQUEST_LINE,    /* not METHOD SP TARGET SP VERSION, or empty target */
    HTTP_E_URI_TOO_LONG,        /* 414 */
    HTTP_E_BAD_VERSION,         /* not HTTP/D.D */
    HTTP_E_VERSION_UNSUPPORTED, /* 505: a well-formed version other than 1.0/1.1 */
    HTTP_E_BAD_STATUS_LINE,     /* not HTTP-version SP 100-599 [SP reason] */
    HTTP_E_BARE_LF,             /* a line ended by LF without CR */
    HTTP_E_BARE_CR,             /* a CR not followed by LF */
    HTTP_E_CTL_CHAR,            /* NUL or another control byte in the start line or a field */
    HTTP_E_OBS_FOLD,            /* a field line starting with SP or HTAB */
    HTTP_E_BAD_HEADER_NAME,     /* empty or not a token */
    HTTP_E_SPACE_BEFORE_COLON,  /* whitespace between field name and colon */
    HTTP_E_NO_COLON,            /* field line without a colon */
    HTTP_E_HEADERS_TOO_LARGE,   /* 431: head bigger than max_header_bytes */
    HTTP_E_TOO_MANY_HEADERS,    /* 431: more than max_header_count fields */
    HTTP_E_NO_HOST,             /* HTTP/1.1 request without Host */
    HTTP_E_DUP_HOST,            /* two Host fields */
    HTTP_E_CL_AND_TE,           /* Content-Length together with Transfer-Encoding */
    HTTP_E_DUP_CL,              /* two Content-Length fields, or a list */
    HTTP_E_BAD_CL,              /* empty, signed, not all digits, or overflowing */
    HTTP_E_TE_NOT_CHUNKED,      /* final transfer coding is not chunked */
    HTTP_E_TE_CHUNKED_TWICE,    /* chunked applied more than once */
    HTTP_E_TE_UNKNOWN,          /* 501: a transfer coding we do not implement */
    HTTP_E_TE_HTTP10,           /* Transfer-Encoding in an HTTP/1.0 message */
    HTTP_E_TE_EMPTY_ELEMENT,    /* an empty element in a Transfer-Encoding list (",chunked") */
    HTTP_E_BAD_HOST,            /* Host is not uri-host [":" port] (RFC 9110 7.2) */
    HTTP_E_BODY_TOO_LARGE,      /* 413: Content-Length or decoded chunks beyond max_body */
    HTTP_E_BAD_CHUNK_SIZE,      /* not 1-16 hex digits, or 0x / + / - / _ / spaces */
    HTTP_E_BAD_CHUNK_EXT,       /* malformed chunk extension */
    HTTP_E_CHUNK_EXT_TOO_LONG,  /* chunk extensions longer than max_chunk_ext */
    HTTP_E_BAD_CHUNK_END,       /* chunk data or size line not ended by CRLF */
    HTTP_E_BAD_TRAILER,         /* malformed trailer section */
    HTTP_E__COUNT
} http_error;

int http_error_status(http_error err);         /* 400, 413, 414, 431, 501 or 505 */
const char *http_error_reason(http_error err); /* short English text for logs and bodies */

typedef enum {
    HTTP_BODY_NONE,        /* no body (no framing fields, HEAD/204/304/1xx response) */
    HTTP_BODY_LENGTH,      /* exactly content_length bytes */
    HTTP_BODY_CHUNKED,     /* chunked transfer coding */
    HTTP_BODY_UNTIL_CLOSE, /* response without framing: body runs to connection close */
} http_body_kind;

typedef enum {
    HTTP_PARSE_AGAIN,   /* all input used; call again with more */
    HTTP_PARSE_DONE,    /* head (or body) complete */
    HTTP_PARSE_DATA,    /* http_parse_body: *data, *data_len hold decoded body bytes */
    HTTP_PARSE_ERROR,   /* refused: see parser->error */
    HTTP_PARSE_TRAILER, /* http_parse_body with keep_trailer: *data, *data_len hold checked
                           trailer field lines (each ending CRLF, possibly a part of one) */
} http_parse_result;

typedef struct {
    /* set by http_parser_init() */
    http_kind kind;
    http_limits limits;
    http_header *headers;
    size_t header_cap;
    /* set by the caller before parsing a response: the request was HEAD (no body follows);
     * http_parser_reset() clears it, as it belongs to one exchange */
    bool response_to_head;
    /* set by the caller before parsing a body: hand out a chunked body's trailer section
     * (HTTP_PARSE_TRAILER) instead of discarding it; http_parser_reset() clears it too */
    bool keep_trailer;

    /* results, valid once http_parse_head() returned HTTP_PARSE_DONE */
    http_span method;  /* request */
    http_span target;  /* request */
    int version_minor; /* HTTP/1.<minor> */
    int status;        /* response */
    http_span reason;  /* response */
    size_t header_count;
    size_t head_len; /* bytes of the head including the blank line */
    http_body_kind body_kind;
    uint64_t content_length; /* HTTP_BODY_LENGTH */
    bool keep_alive;         /* version default adjusted by Connection */
    bool upgrade;            /* Connection: upgrade with an Upgrade field */
    bool expect_continue;    /* HTTP/1.1 request with Expect: 100-continue */
    http_error error;

    /* private state: zeroed by init/reset, not for callers */
    size_t pos;           /* next head byte to scan for LF */
    size_t line_start;    /* start of the head line being scanned */
    size_t start_line;    /* start of the start line: past the empty lines skipped before it */
    int host_count;       /* Host fields seen */
    int cl_count;         /* Content-Length fields seen */
    bool te_seen;         /* Transfer-Encoding seen */
    bool te_chunked;      /* chunked is the final coding so far */
    bool te_has_chunked;  /* chunked appeared at all (a second one is refused) */
    bool te_other;        /* a coding other than chunked appeared */
    bool conn_close;      /* Connection lists close */
    bool conn_keep_alive; /* Connection lists keep-alive */
    bool conn_upgrade;    /* Connection lists upgrade */
    bool upgrade_seen;    /* an Upgrade field is present */
    bool head_done;       /* http_parse_head returned HTTP_PARSE_DONE */
    int body_state;       /* chunked decoder state */
    uint64_t remaining;   /* bytes left in current chunk or body */
    uint64_t body_total;  /* decoded body bytes so far */
    size_t scan;          /* digits, extension or trailer bytes counted so far */
    size_t trailer_count; /* trailer fields seen */
    int rl_part;          /* request line checked so far: method, target or version */
    size_t rl_len;        /* bytes of that part */
} http_parser;

void http_parser_init(http_parser *p, http_kind kind, const http_limits *limits,
                      http_header *headers, size_t header_cap);

/* Forget the last message, keep kind, limits and header array: for the next pipelined one.
 * limits may be NULL in http_parser_init() for http_limits_default(). */
void http_parser_reset(http_parser *p);

/* Parse the head. buf holds every byte received since the message started (len of them); call
 * again with the same bytes plus more after HTTP_PARSE_AGAIN: scanning resumes where it stopped.
 * On HTTP_PARSE_DONE the head is buf[0, head_len); the body (or the next message) follows.
 * Errors are sticky: later calls return HTTP_PARSE_ERROR until reset. Choices where RFC 9112
 * leaves room: empty lines (CRLF) before a request line are skipped, with the spans counted
 * from buf[0] as always; an HTAB in the request line is refused (HTTP_E_BAD_REQUEST_LINE); a
 * status line without the SP before an empty reason is accepted; the status must be 100-599;
 * an empty element in a Transfer-Encoding list is refused, where other lists ignore them. */
http_parse_result http_parse_head(http_parser *p, const char *buf, size_t len);

/* Decode the body after the head. Consumes bytes from in (len of them) and sets *consumed.
 * Chunk extensions are checked (name[=token|quoted-string], no BWS) and skipped; trailer fields
 * are checked against the head's limits (max_header_count fields, max_header_bytes bytes) and
 * discarded, or with keep_trailer given to the caller as HTTP_PARSE_TRAILER: the bytes are in
 * in[0, *consumed), call again with the rest; the caller collects them until HTTP_PARSE_DONE
 * (at most max_header_bytes) and splits them with http_trailer_fields.
 * HTTP_PARSE_DATA: *data, *data_len are body bytes inside in[0, *consumed); call again with the
 * rest. HTTP_PARSE_AGAIN: all of in was used, more is needed. HTTP_PARSE_DONE: the message ended
 * after *consumed bytes; what follows belongs to the next message. HTTP_BODY_UNTIL_CLOSE bodies
 * never end here: the caller ends them at connection close. */
http_parse_result http_parse_body(http_parser *p, const char *in, size_t len, size_t *consumed,
                                  const char **data, size_t *data_len);

/* The fields of a trailer section as HTTP_PARSE_TRAILER gave it (lines, len bytes, complete):
 * spans from lines, values with OWS trimmed, into out (cap of them). Returns how many. */
size_t http_trailer_fields(const char *lines, size_t len, http_header *out, size_t cap);

/* Helpers over a parsed head (buf is the buffer given to http_parse_head). */
static inline const char *http_span_ptr(const char *buf, http_span s)
{
    return buf + s.off;
}
bool http_span_eq(const char *buf, http_span s, const char *text);    /* exact */
bool http_span_eq_ci(const char *buf, http_span s, const char *text); /* ASCII case-insensitive */
/* First field with this name (case-insensitive), or NULL. */
const http_header *http_find_header(const http_parser *p, const char *buf, const char *name);
/* True when a comma-separated field value (e.g. Connection) lists token, case-insensitively. */
bool http_list_has_token(const char *value, size_t len, const char *token);
/* RFC 9110 token character. */
bool http_is_tchar(unsigned char c);

#endif
