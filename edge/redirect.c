/* The plain-HTTP listener's two jobs: ACME HTTP-01 challenge files from the webroot certd
 * writes to (for any Host, known site or not, as certd may be issuing a name no site has yet),
 * and a permanent redirect to https:// for everything else. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "edge/req.h"

#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"
#define MAX_TOKEN 256
#define MAX_CHALLENGE_FILE 16384
/* Seconds: certd usually has a certificate within a few of them. */
#define PENDING_RETRY_AFTER "10"

/* ACME tokens are base64url (RFC 8555 8.3): anything else cannot be one and never reaches the
 * file system. */
static bool token_ok(const char *t, size_t len)
{
    if (len == 0 || len > MAX_TOKEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = t[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        if (!ok)
            return false;
    }
    return true;
}

static int open_token(const char *token, size_t len)
{
    if (edge_w.acme_fd < 0)
        return -1;
    char path[sizeof(".well-known/acme-challenge/") + MAX_TOKEN];
    snprintf(path, sizeof(path), ".well-known/acme-challenge/%.*s", (int)len, token);
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
    return (int)syscall(SYS_openat2, edge_w.acme_fd, path, &how, sizeof(how));
}

static void serve_challenge(edge_req *r, const char *token, size_t len)
{
    int fd = token_ok(token, len) ? open_token(token, len) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_CHALLENGE_FILE) {
        if (fd >= 0)
            close(fd);
        edge_resp_text(r, 404, "no such challenge\n");
        return;
    }
    char body[MAX_CHALLENGE_FILE];
    ssize_t n = read(fd, body, (size_t)st.st_size);
    close(fd);
    if (n < 0)
        n = 0;
    edge_resp_start(r, 200);
    edge_resp_header(r, "Content-Type", "text/plain");
    edge_resp_head_done(r, n);
    edge_resp_write(r, body, (size_t)n);
    edge_resp_finish(r);
}

/* The path and query of the target, whatever form it came in. */
static void origin_part(const char *t, size_t len, const char **out, size_t *outlen)
{
    if (len > 0 && t[0] != '/') {
        const char *scheme = memmem(t, len, "://", 3);
        const char *slash = scheme ? memchr(scheme + 3, '/', len - (size_t)(scheme + 3 - t)) : NULL;
        if (!slash) {
            *out = "/";
            *outlen = 1;
            return;
        }
        len -= (size_t)(slash - t);
        t = slash;
    }
    *out = t;
    *outlen = len;
}

static void redirect(edge_req *r, const char *target, size_t tlen)
{
    const char *path;
    size_t plen;
    origin_part(target, tlen, &path, &plen);
    bool safe = edge_req_method_is(r, "GET") || edge_req_method_is(r, "HEAD");
    char port[16] = "";
    if (edge_w.https_port > 0 && edge_w.https_port != 443)
        snprintf(port, sizeof(port), ":%d", edge_w.https_port);
    edge_resp_start(r, safe ? 301 : 308);
    /* The site's own name, never the Host header: a redirect must not be steerable. */
    edge_resp_headerf(r, "Location", "https://%s%s%.*s", r->site->name, port, (int)plen, path);
    edge_resp_head_done(r, 0);
    edge_resp_finish(r);
}

bool edge_redirect_handle(edge_req *r)
{
    const char *t = http_span_ptr(r->head, r->target);
    size_t tlen = r->target.len;
    size_t plen = sizeof(CHALLENGE_PREFIX) - 1;
    bool get = edge_req_method_is(r, "GET") || edge_req_method_is(r, "HEAD");
    if (get && tlen >= plen && memcmp(t, CHALLENGE_PREFIX, plen) == 0) {
        const char *q = memchr(t, '?', tlen);
        size_t end = q ? (size_t)(q - t) : tlen;
        serve_challenge(r, t + plen, end - plen);
        return true;
    }
    if (!r->site)
        return false;
    if (edge_site_tls_pending(r->site)) {
        /* No HTTPS to redirect to yet, and an acme/internal site is not meant to be served in
         * the clear: the client is told to come back once certd has the certificate. */
        edge_resp_start(r, 503);
        edge_resp_header(r, "Retry-After", PENDING_RETRY_AFTER);
        edge_resp_body(r, "text/plain; charset=utf-8",
                       "the certificate for this site is being obtained; retry shortly\n");
        return true;
    }
    /* A site without TLS is served on plain HTTP like any other; only TLS sites redirect. */
    if (!r->site->ctx)
        return false;
    redirect(r, t, tlen);
    return true;
}
