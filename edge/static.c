/* Static files under a URL prefix: safe path resolution beneath the root (openat2), MIME types,
 * validators and conditional requests, single byte ranges, precompressed siblings, and the file
 * handed to the response writer a chunk at a time (the protocol picks sendfile or a copy). */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shared/percent.h"
#include "edge/coding.h"
#include "edge/req.h"

#define MAX_PATH 4096
/* At most this many file chunks per event-loop turn. */
#define TURN_CHUNKS 16

/* A file being sent: the handler's state inside the request. */
typedef struct {
    int fd;
    off_t off;
    uint64_t left;
} file_send;

_Static_assert(sizeof(file_send) <= EDGE_REQ_CTX_SIZE, "file_send fits in the request");

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

static edge_static_root *match_root(const edge_req *r, const char *path, size_t len, bool *bare)
{
    edge_static_root *best = NULL;
    *bare = false;
    for (size_t i = 0; i < r->site->static_count; i++) {
        edge_static_root *root = &r->site->statics[i];
        if (best && root->prefix_len <= best->prefix_len)
            continue;
        if (len >= root->prefix_len && memcmp(path, root->prefix, root->prefix_len) == 0) {
            best = root;
            *bare = false;
        } else if (len + 1 == root->prefix_len && memcmp(path, root->prefix, len) == 0) {
            best = root; /* "/static" for prefix "/static/": redirect to the directory */
            *bare = true;
        }
    }
    return best;
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
static void choose_encoding(const edge_req *r, int root, const char *rel, representation *rep)
{
    if (!compressible(mime_for(rel)))
        return;
    rep->vary = true;
    size_t aelen = 0;
    const char *ae = edge_req_header(r, "Accept-Encoding", &aelen);
    if (!ae)
        return;
    static const char *const codings[2][2] = {{"br", ".br"}, {"gzip", ".gz"}};
    for (int i = 0; i < 2 && !rep->encoding; i++) {
        if (edge_accept_q(ae, aelen, codings[i][0]) <= 0)
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

static bool not_modified(const edge_req *r, const representation *rep)
{
    size_t len;
    const char *inm = edge_req_header(r, "If-None-Match", &len);
    if (inm)
        return etag_listed(inm, len, rep->etag);
    const char *ims = edge_req_header(r, "If-Modified-Since", &len);
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

static int range_request(const edge_req *r, const representation *rep, uint64_t *from, uint64_t *to)
{
    size_t len, irlen;
    const char *range = edge_req_header(r, "Range", &len);
    if (!range)
        return 0;
    const char *ir = edge_req_header(r, "If-Range", &irlen);
    if (ir && !(irlen == strlen(rep->etag) && memcmp(ir, rep->etag, irlen) == 0)) {
        time_t t = parse_http_date(ir, irlen);
        if (t < 0 || rep->st.st_mtime > t)
            return 0; /* changed since: send the whole new version */
    }
    return parse_range(range, len, (uint64_t)rep->st.st_size, from, to);
}

static void common_headers(edge_req *r, const edge_static_root *root, const char *rel,
                           const representation *rep)
{
    edge_resp_header(r, "Content-Type", mime_for(rel));
    edge_resp_header(r, "Last-Modified", rep->last_modified);
    edge_resp_header(r, "ETag", rep->etag);
    edge_resp_header(r, "Accept-Ranges", "bytes");
    if (root->cache_control)
        edge_resp_header(r, "Cache-Control", root->cache_control);
    if (rep->encoding)
        edge_resp_header(r, "Content-Encoding", rep->encoding);
    if (rep->vary)
        edge_resp_header(r, "Vary", "Accept-Encoding");
}

/* Chunks go out one after another until the socket is full or TURN_CHUNKS have gone: one trip
 * through the event loop per chunk cost more than the copying (a 1 MiB file on TLS took 16
 * turns), and the bound keeps one fast reader from starving the others. */
static void file_proceed(edge_req *r)
{
    file_send *f = edge_req_ctx(r);
    for (int i = 0; i < TURN_CHUNKS && f->left > 0; i++) {
        int64_t n = edge_resp_send_file(r, f->fd, f->off, f->left);
        if (n < 0) {
            edge_resp_abort(r);
            return;
        }
        f->off += n;
        f->left -= (uint64_t)n;
        if (n == 0 || edge_resp_queued(r) > 0)
            break; /* the socket is full */
    }
    if (f->left > 0)
        return;
    close(f->fd);
    f->fd = -1;
    edge_resp_finish(r);
}

static void file_closed(edge_req *r)
{
    file_send *f = edge_req_ctx(r);
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

static const edge_handler file_handler = {.proceed = file_proceed, .closed = file_closed};

static void respond_file(edge_req *r, const edge_static_root *root, const char *rel,
                         representation *rep)
{
    uint64_t size = (uint64_t)rep->st.st_size, from = 0, to = size ? size - 1 : 0;
    if (not_modified(r, rep)) {
        close(rep->fd);
        edge_resp_start(r, 304);
        common_headers(r, root, rel, rep);
        edge_resp_head_done(r, EDGE_LEN_NONE);
        edge_resp_finish(r);
        return;
    }
    int range = range_request(r, rep, &from, &to);
    if (range < 0) {
        close(rep->fd);
        edge_resp_start(r, 416);
        edge_resp_headerf(r, "Content-Range", "bytes */%llu", (unsigned long long)size);
        edge_resp_body(r, "text/plain; charset=utf-8", "range not satisfiable\n");
        return;
    }
    uint64_t len = size == 0 ? 0 : to - from + 1;
    edge_resp_start(r, range ? 206 : 200);
    common_headers(r, root, rel, rep);
    if (range)
        edge_resp_headerf(r, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long)from,
                          (unsigned long long)to, (unsigned long long)size);
    edge_resp_head_done(r, (int64_t)len);
    if (r->head_method || len == 0) {
        close(rep->fd);
        edge_resp_finish(r);
        return;
    }
    file_send *f = edge_req_ctx(r);
    *f = (file_send){.fd = rep->fd, .off = (off_t)from, .left = len};
    r->wants_room = true;
    edge_req_take(r, &file_handler);
}

static void redirect_dir(edge_req *r, const char *path, size_t plen, const char *query)
{
    edge_resp_start(r, 301);
    edge_resp_headerf(r, "Location", "%.*s/%s", (int)plen, path, query);
    edge_resp_head_done(r, 0);
    edge_resp_finish(r);
}

/* A "/" root with upstreams behind it covers the whole site: what it does not hold belongs to
 * the application, or the upstreams could never be reached. */
static bool falls_through(const edge_req *r, const edge_static_root *root)
{
    return root->prefix_len == 1 && r->site->upstream_count > 0;
}

/* false: no such file under a root that falls through; nothing was answered. */
static bool serve(edge_req *r, edge_static_root *root, const char *path, size_t plen,
                  const char *query)
{
    char rel[MAX_PATH];
    int bad = decode_path(path + root->prefix_len, plen - root->prefix_len, rel, sizeof(rel) - 16);
    if (bad) {
        edge_resp_text(r, bad, bad == 404 ? "not found\n" : "bad path\n");
        return true;
    }
    if (rel[0] == 0 || rel[strlen(rel) - 1] == '/')
        strcat(rel, "index.html");
    representation rep = {.fd = open_beneath(root->root_fd, rel, O_RDONLY)};
    if (rep.fd < 0 || fstat(rep.fd, &rep.st) < 0) {
        int e = errno;
        if (rep.fd >= 0)
            close(rep.fd);
        if ((e == ENOENT || e == ENOTDIR) && falls_through(r, root))
            return false;
        int status = (e == EACCES) ? 403 : 404;
        edge_resp_text(r, status, status == 403 ? "forbidden\n" : "not found\n");
        return true;
    }
    if (S_ISDIR(rep.st.st_mode)) {
        close(rep.fd);
        redirect_dir(r, path, plen, query);
        return true;
    }
    if (!S_ISREG(rep.st.st_mode)) {
        close(rep.fd);
        if (falls_through(r, root))
            return false;
        edge_resp_text(r, 404, "not found\n");
        return true;
    }
    choose_encoding(r, root->root_fd, rel, &rep);
    validators(&rep);
    respond_file(r, root, rel, &rep);
    return true;
}

bool edge_static_handle(edge_req *r)
{
    const char *t = http_span_ptr(r->head, r->target);
    size_t tlen = r->target.len;
    if (tlen == 0 || t[0] != '/')
        return false;
    const char *q = memchr(t, '?', tlen);
    size_t plen = q ? (size_t)(q - t) : tlen;
    bool bare;
    edge_static_root *root = match_root(r, t, plen, &bare);
    if (!root)
        return false;
    if (!edge_req_method_is(r, "GET") && !edge_req_method_is(r, "HEAD")) {
        if (falls_through(r, root))
            return false;
        edge_resp_start(r, 405);
        edge_resp_header(r, "Allow", "GET, HEAD");
        edge_resp_body(r, "text/plain; charset=utf-8", "method not allowed\n");
        return true;
    }
    char query[2048] = "";
    if (q && tlen - plen < sizeof(query))
        snprintf(query, sizeof(query), "%.*s", (int)(tlen - plen), q);
    if (bare) {
        redirect_dir(r, t, plen, query);
        return true;
    }
    return serve(r, root, t, plen, query);
}
