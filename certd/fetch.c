/* certd's HTTPS client on one reused libcurl handle: peer and host always verified, HTTPS only,
 * bounded time and body size, and a stop request aborts the transfer. */
#include "certd/certd.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/log.h"

#define FETCH_MAX_BODY (4u << 20) /* a chain or an order is a few KiB */
#define FETCH_MAX_HEADER_VALUE 8192

int fetch_client_init(fetch_client *c, const char *ca_bundle)
{
    memset(c, 0, sizeof(*c));
    c->curl = curl_easy_init();
    if (!c->curl) {
        log_error("libcurl: cannot create a handle");
        return -1;
    }
    c->ca_bundle = ca_bundle ? strdup(ca_bundle) : NULL;
    c->connect_timeout_s = 10;
    c->timeout_s = 30;
    c->max_body = FETCH_MAX_BODY;
    return 0;
}

void fetch_client_free(fetch_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->ca_bundle);
    memset(c, 0, sizeof(*c));
}

void fetch_response_free(fetch_response *r)
{
    buf_free(&r->body);
    free(r->location);
    free(r->nonce);
    free(r->retry_after);
    free(r->content_type);
    memset(r, 0, sizeof(*r));
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    fetch_response *r = userp;
    size_t n = size * nmemb;
    /* keep one byte for the terminating NUL */
    if (buf_reserve(&r->body, n + 1) < 0)
        return 0; /* too big: curl fails the transfer with a write error */
    memcpy(buf_tail(&r->body), data, n);
    buf_commit(&r->body, n);
    buf_tail(&r->body)[0] = '\0';
    return n;
}

/* "Name: value\r\n" -> value when the name matches, trimmed and copied. */
static char *header_value(const char *line, size_t len, const char *name)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return NULL;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    if ((size_t)(end - v) > FETCH_MAX_HEADER_VALUE)
        return NULL;
    return strndup(v, (size_t)(end - v));
}

static void keep_header(char **slot, char *value)
{
    if (!value)
        return;
    free(*slot);
    *slot = value;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    fetch_response *r = userp;
    size_t n = size * nmemb;
    /* A new status line (after a 100 Continue or redirect) starts a new head. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        free(r->location), r->location = NULL;
        free(r->retry_after), r->retry_after = NULL;
        free(r->content_type), r->content_type = NULL;
    }
    keep_header(&r->location, header_value(data, n, "Location"));
    keep_header(&r->nonce, header_value(data, n, "Replay-Nonce"));
    keep_header(&r->retry_after, header_value(data, n, "Retry-After"));
    keep_header(&r->content_type, header_value(data, n, "Content-Type"));
    return n;
}

static int on_progress(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)p, (void)dt, (void)dn, (void)ut, (void)un;
    return wait_stop_requested() ? 1 : 0;
}

static void set_common(fetch_client *c, fetch_response *resp)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_bundle)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_bundle);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "hearth-certd/0.1");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
}

int fetch_request(fetch_client *c, const char *method, const char *url, const char *ctype,
                  const char *body, fetch_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    buf_init(&resp->body, c->max_body);
    if (wait_stop_requested())
        return -1;
    set_common(c, resp);
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_slist_free_all(c->headers);
    c->headers = NULL;
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0) {
        char line[128];
        snprintf(line, sizeof(line), "Content-Type: %s", ctype ? ctype : "application/json");
        c->headers = curl_slist_append(c->headers, line);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    }
    c->headers = curl_slist_append(c->headers, "Accept-Language: en");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    c->errbuf[0] = '\0';
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        log_error("%s %s: %s", method, url,
                  wait_stop_requested() ? "interrupted"
                                        : (c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc)));
        fetch_response_free(resp);
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (resp->body.data == NULL && buf_reserve(&resp->body, 1) == 0)
        buf_tail(&resp->body)[0] = '\0';
    return 0;
}
