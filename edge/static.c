/* Static files under a URL prefix: safe path resolution beneath the root (openat2), MIME types,
 * validators and conditional requests, single byte ranges, precompressed siblings, and the body
 * sent with sendfile (plain) or buffered SSL_write (TLS without kernel TLS). */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shared/percent.h"
#include "edge/edge.h"

#define MAX_PATH 4096

typedef struct {
    const char *ext;
    const char *type;
} mime_entry;

static const mime_entry mime_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
};

static const char *mime_for(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof(mime_types) / sizeof(mime_types[0]); i++)
        if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
            return mime_types[i].type;
    return "application/octet-stream";
}

/* Decode %XX into out and refuse what could name something outside the root or confuse the
 * file system: encoded '/' and '\', NUL and control bytes, backslashes, "." and ".." segments.
 * Returns 0, or the status to answer with. */
static int decode_path(const char *in, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '%') {
            int v = percent_escape(in + i, len - i);
            if (v < 0)
                return 400;
            ch = (unsigned char)v;
            if (ch == '/')
                return 404; /* a slash inside a segment names no file */
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f || ch == '\\')
            return 404;
        if (o + 1 >= outlen)
            return 414;
        out[o++] = (char)ch;
    }
    out[o] = 0;
    /* Walk the segments: "." and ".." are refused rather than resolved. */
    for (char *seg = out; *seg;) {
        char *end = strchr(seg, '/');
        size_t sl = end ? (size_t)(end - seg) : strlen(seg);
        if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
            return 404;
        if (!end)
            break;
        seg = end + 1;
    }
    return 0;
}

static int open_beneath(int root, const char *rel, int flags)
{
    /* Empty segments ("a//b") are harmless; a leading '/' would not be beneath. */
    while (*rel == '/')
        rel++;
    struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof(how));
}

static edge_static_root *match_root(edge_conn *c, const char *path, size_t len, bool *bare)
{
    edge_static_root *best = NULL;
    *bare = false;
    for (size_t i = 0; i < c->site->static_count; i++) {
        edge_static_root *r = &c->site->statics[i];
        if (best && r->prefix_len <= best->prefix_len)
            continue;
        if (len >= r->prefix_len && memcmp(path, r->prefix, r->prefix_len) == 0) {
            best = r;
            *bare = false;
        } else if (len + 1 == r->prefix_len && memcmp(path, r->prefix, len) == 0) {
            best = r; /* "/static" for prefix "/static/": redirect to the directory */
            *bare = true;
        }
    }
    return best;
}

/* True when the Accept-Encoding value lists coding with a q-value other than 0. */
static bool accepts(const char *v, size_t len, const char *coding)
{
    size_t cl = strlen(coding);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && v[i] != ';' && v[i] != ' ' && v[i] != '\t')
            i++;
        bool name_ok = (i - s == cl && strncasecmp(v + s, coding, cl) == 0);
        bool q_zero = false;
        size_t e = i;
        while (e < len && v[e] != ',')
            e++;
        const char *q = memmem(v + i, e - i, "q=", 2);
        if (q) {
            q += 2;
            q_zero = true;
            for (const char *p = q; p < v + e && *p != ' ' && *p != ';'; p++)
                if (*p >= '1' && *p <= '9')
                    q_zero = false;
        }
        if (name_ok && !q_zero)
            return true;
        i = e;
    }
    return false;
}

typedef struct {
    int fd;
    struct stat st;
    const char *encoding; /* NULL, "br" or "gzip" */
    bool vary;
    char etag[64];
    char last_modified[40];
} representation;

/* Types worth precompressing; only these are looked up with .br/.gz siblings and answered
 * with Vary (as nginx's gzip_static with gzip_vary does for gzip_types). */
static bool compressible(const char *mime)
{
    return strncmp(mime, "text/", 5) == 0 || strstr(mime, "json") || strstr(mime, "xml") ||
           strcmp(mime, "application/wasm") == 0;
}

/* Swap in a precompressed sibling when the client takes it. Nothing is looked up for clients
 * that take no coding, so plain requests cost no extra system call. */
static void choose_encoding(edge_conn *c, int root, const char *rel, representation *rep)
{
    if (!compressible(mime_for(rel)))
        return;
    rep->vary = true;
    size_t aelen = 0;
    const char *ae = edge_req_header(c, "Accept-Encoding", &aelen);
    if (!ae)
        return;
    static const char *const codings[2][2] = {{"br", ".br"}, {"gzip", ".gz"}};
    for (int i = 0; i < 2 && !rep->encoding; i++) {
        if (!accepts(ae, aelen, codings[i][0]))
            continue;
        char p[MAX_PATH + 8];
        snprintf(p, sizeof(p), "%s%s", rel, codings[i][1]);
        int fd = open_beneath(root, p, O_RDONLY);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            close(rep->fd);
            rep->fd = fd;
            rep->st = st;
            rep->encoding = codings[i][0];
        } else if (fd >= 0) {
            close(fd);
        }
    }
}

static void validators(representation *rep)
{
    snprintf(rep->etag, sizeof(rep->etag), "\"%llx-%llx%s\"", (unsigned long long)rep->st.st_mtime,
             (unsigned long long)rep->st.st_size,
             rep->encoding ? (rep->encoding[0] == 'b' ? "-br" : "-gz") : "");
    struct tm tm;
    gmtime_r(&rep->st.st_mtime, &tm);
    strftime(rep->last_modified, sizeof(rep->last_modified), "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static bool etag_listed(const char *v, size_t len, const char *etag)
{
    size_t el = strlen(etag);
    if (len == 1 && v[0] == '*')
        return true;
    for (size_t i = 0; i + el <= len; i++) {
        /* Weak comparison, as RFC 9110 asks for If-None-Match. */
        size_t s = i;
        if (len - i >= 2 && v[i] == 'W' && v[i + 1] == '/')
            s = i + 2;
        if (s + el <= len && memcmp(v + s, etag, el) == 0)
            return true;
    }
    return false;
}

static time_t parse_http_date(const char *v, size_t len)
{
    char tmp[64];
    if (len >= sizeof(tmp))
        return -1;
    memcpy(tmp, v, len);
    tmp[len] = 0;
    struct tm tm = {0};
    const char *end = strptime(tmp, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -1;
    return timegm(&tm);
}

static bool not_modified(edge_conn *c, const representation *rep)
{
    size_t len;
    const char *inm = edge_req_header(c, "If-None-Match", &len);
    if (inm)
        return etag_listed(inm, len, rep->etag);
    const char *ims = edge_req_header(c, "If-Modified-Since", &len);
    if (ims) {
        time_t t = parse_http_date(ims, len);
        return t >= 0 && rep->st.st_mtime <= t;
    }
    return false;
}

/* "bytes=A-B", "bytes=A-", "bytes=-N". 1: range set, 0: serve it all, -1: 416. */
static int parse_range(const char *v, size_t len, uint64_t size, uint64_t *from, uint64_t *to)
{
    if (len < 7 || strncasecmp(v, "bytes=", 6) != 0 || memchr(v, ',', len))
        return 0; /* other units and multipart ranges: the whole file is a valid answer */
    char tmp[64];
    if (len - 6 >= sizeof(tmp))
        return 0;
    memcpy(tmp, v + 6, len - 6);
    tmp[len - 6] = 0;
    char *dash = strchr(tmp, '-');
    if (!dash)
        return 0;
    *dash = 0;
    const char *a = tmp, *b = dash + 1;
    for (const char *p = a; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    for (const char *p = b; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    if (!*a && !*b)
        return 0;
    if (!*a) {
        uint64_t n = strtoull(b, NULL, 10);
        if (n == 0 || size == 0)
            return -1;
        *from = n >= size ? 0 : size - n;
        *to = size - 1;
        return 1;
    }
    *from = strtoull(a, NULL, 10);
    *to = *b ? strtoull(b, NULL, 10) : size - 1;
    if (*from >= size || *to < *from)
        return -1;
    if (*to >= size)
        *to = size - 1;
    return 1;
}

static int range_request(edge_conn *c, const representation *rep, uint64_t *from, uint64_t *to)
{
    size_t len, irlen;
    const char *r = edge_req_header(c, "Range", &len);
    if (!r)
        return 0;
    const char *ir = edge_req_header(c, "If-Range", &irlen);
    if (ir && !(irlen == strlen(rep->etag) && memcmp(ir, rep->etag, irlen) == 0)) {
        time_t t = parse_http_date(ir, irlen);
        if (t < 0 || rep->st.st_mtime > t)
            return 0; /* changed since: send the whole new version */
    }
    return parse_range(r, len, (uint64_t)rep->st.st_size, from, to);
}

static void common_headers(edge_conn *c, const edge_static_root *root, const char *rel,
                           const representation *rep)
{
    buf_printf(&c->out, "Content-Type: %s\r\nLast-Modified: %s\r\nETag: %s\r\n", mime_for(rel),
               rep->last_modified, rep->etag);
    buf_append_str(&c->out, "Accept-Ranges: bytes\r\n");
    if (root->cache_control)
        buf_printf(&c->out, "Cache-Control: %s\r\n", root->cache_control);
    if (rep->encoding)
        buf_printf(&c->out, "Content-Encoding: %s\r\n", rep->encoding);
    if (rep->vary)
        buf_append_str(&c->out, "Vary: Accept-Encoding\r\n");
}

static void respond_file(edge_conn *c, const edge_static_root *root, const char *rel,
                         representation *rep)
{
    bool head = http_span_eq(buf_head(&c->in), c->parser.method, "HEAD");
    uint64_t size = (uint64_t)rep->st.st_size, from = 0, to = size ? size - 1 : 0;
    if (not_modified(c, rep)) {
        edge_resp_start(c, 304, NULL);
        common_headers(c, root, rel, rep);
        buf_append_str(&c->out, "\r\n");
        close(rep->fd);
        c->state = CONN_SIMPLE;
        return;
    }
    int range = range_request(c, rep, &from, &to);
    if (range < 0) {
        close(rep->fd);
        char extra[64];
        snprintf(extra, sizeof(extra), "Content-Range: bytes */%llu\r\n", (unsigned long long)size);
        edge_resp_simple(c, 416, NULL, extra, "range not satisfiable\n");
        return;
    }
    uint64_t len = size == 0 ? 0 : to - from + 1;
    edge_resp_start(c, range ? 206 : 200, NULL);
    common_headers(c, root, rel, rep);
    if (range)
        buf_printf(&c->out, "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)from,
                   (unsigned long long)to, (unsigned long long)size);
    buf_printf(&c->out, "Content-Length: %llu\r\n\r\n", (unsigned long long)len);
    if (head || len == 0) {
        close(rep->fd);
        c->state = CONN_SIMPLE;
        return;
    }
    c->file_fd = rep->fd;
    c->file_off = (off_t)from;
    c->file_left = len;
    c->body_sent = len; /* counted as sent up front; a client that leaves early is rare */
    c->state = CONN_STATIC;
}

static void redirect_dir(edge_conn *c, const char *path, size_t plen, const char *query)
{
    edge_resp_start(c, 301, NULL);
    buf_printf(&c->out, "Location: %.*s/%s\r\nContent-Length: 0\r\n\r\n", (int)plen, path, query);
    c->state = CONN_SIMPLE;
}

/* A "/" root with upstreams behind it covers the whole site: what it does not hold belongs to
 * the application, or the upstreams could never be reached. */
static bool falls_through(const edge_conn *c, const edge_static_root *root)
{
    return root->prefix_len == 1 && c->site->upstream_count > 0;
}

/* false: no such file under a root that falls through; nothing was answered. */
static bool serve(edge_conn *c, edge_static_root *root, const char *path, size_t plen,
                  const char *query)
{
    char rel[MAX_PATH];
    int bad = decode_path(path + root->prefix_len, plen - root->prefix_len, rel, sizeof(rel) - 16);
    if (bad) {
        edge_resp_simple(c, bad, NULL, NULL, bad == 404 ? "not found\n" : "bad path\n");
        return true;
    }
    if (rel[0] == 0 || rel[strlen(rel) - 1] == '/')
        strcat(rel, "index.html");
    representation rep = {.fd = open_beneath(root->root_fd, rel, O_RDONLY)};
    if (rep.fd < 0 || fstat(rep.fd, &rep.st) < 0) {
        int e = errno;
        if (rep.fd >= 0)
            close(rep.fd);
        if ((e == ENOENT || e == ENOTDIR) && falls_through(c, root))
            return false;
        int status = (e == EACCES) ? 403 : 404;
        edge_resp_simple(c, status, NULL, NULL, status == 403 ? "forbidden\n" : "not found\n");
        return true;
    }
    if (S_ISDIR(rep.st.st_mode)) {
        close(rep.fd);
        redirect_dir(c, path, plen, query);
        return true;
    }
    if (!S_ISREG(rep.st.st_mode)) {
        close(rep.fd);
        if (falls_through(c, root))
            return false;
        edge_resp_simple(c, 404, NULL, NULL, "not found\n");
        return true;
    }
    choose_encoding(c, root->root_fd, rel, &rep);
    validators(&rep);
    respond_file(c, root, rel, &rep);
    return true;
}

bool edge_static_handle(edge_conn *c)
{
    const char *t = http_span_ptr(buf_head(&c->in), c->parser.target);
    size_t tlen = c->parser.target.len;
    if (tlen == 0 || t[0] != '/')
        return false;
    const char *q = memchr(t, '?', tlen);
    size_t plen = q ? (size_t)(q - t) : tlen;
    bool bare;
    edge_static_root *root = match_root(c, t, plen, &bare);
    if (!root)
        return false;
    const char *m = buf_head(&c->in);
    if (!http_span_eq(m, c->parser.method, "GET") && !http_span_eq(m, c->parser.method, "HEAD")) {
        if (falls_through(c, root))
            return false;
        edge_resp_simple(c, 405, NULL, "Allow: GET, HEAD\r\n", "method not allowed\n");
        return true;
    }
    char query[2048] = "";
    if (q && tlen - plen < sizeof(query))
        snprintf(query, sizeof(query), "%.*s", (int)(tlen - plen), q);
    if (bare) {
        redirect_dir(c, t, plen, query);
        return true;
    }
    return serve(c, root, t, plen, query);
}

static int send_plain(edge_conn *c)
{
    size_t n = c->file_left > (1u << 20) ? (1u << 20) : (size_t)c->file_left;
    ssize_t r = sendfile(c->io.fd, c->file_fd, &c->file_off, n);
    if (r < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (r == 0)
        return -1; /* the file shrank under us: the promised length cannot be kept */
    c->file_left -= (uint64_t)r;
    return 0;
}

/* Without kernel TLS the bytes must pass through user space anyway: read a chunk for the flush
 * loop to SSL_write; the caller reads the next only once little is left (bounded memory). */
static int send_buffered(edge_conn *c)
{
    size_t n = c->file_left > EDGE_READ_CHUNK ? EDGE_READ_CHUNK : (size_t)c->file_left;
#ifdef BIO_get_ktls_send
    if (c->io.ssl && BIO_get_ktls_send(SSL_get_wbio(c->io.ssl))) {
        ossl_ssize_t r = SSL_sendfile(c->io.ssl, c->file_fd, c->file_off, n, 0);
        if (r > 0) {
            c->file_off += r;
            c->file_left -= (uint64_t)r;
            return 0;
        }
        return SSL_get_error(c->io.ssl, (int)r) == SSL_ERROR_WANT_WRITE ? 0 : -1;
    }
#endif
    if (buf_reserve(&c->out, n) < 0)
        return -1;
    ssize_t r = pread(c->file_fd, buf_tail(&c->out), n, c->file_off);
    if (r <= 0)
        return -1;
    buf_commit(&c->out, (size_t)r);
    c->file_off += r;
    c->file_left -= (uint64_t)r;
    return 0;
}

int edge_static_send(edge_conn *c)
{
    if (c->io.ssl || c->file_left + buf_used(&c->out) <= EDGE_SMALL_FILE)
        return send_buffered(c);
    return send_plain(c);
}
