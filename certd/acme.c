/* The ACME transport (RFC 8555 6): directory, Replay-Nonces, and acme_post(), the one place
 * that signs requests and retries them (badNonce, Retry-After, 5xx), always boundedly. */
#include "certd/certd.h"

#include <stdlib.h>
#include <string.h>

#include "shared/backoff.h"
#include "shared/log.h"

#define ACME_BADNONCE_RETRIES 10
#define ACME_SERVER_RETRIES 4
#define ACME_RETRY_MIN_MS 500
#define ACME_RETRY_MAX_MS 30000
#define ACME_MAX_NONCE 512

const char *certd_json_str(const json_t *obj, const char *key)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int acme_init(acme_ctx *a, const char *dir_url, const char *ca_bundle, int64_t timeout_ms)
{
    memset(a, 0, sizeof(*a));
    a->dir_url = strdup(dir_url);
    a->deadline_ms = wait_now_ms() + timeout_ms;
    if (!a->dir_url || fetch_client_init(&a->http, ca_bundle) < 0)
        return -1;
    return 0;
}

void acme_free(acme_ctx *a)
{
    fetch_client_free(&a->http);
    free(a->dir_url);
    json_decref(a->dir);
    free(a->nonce);
    EVP_PKEY_free(a->key);
    free(a->kid);
    memset(a, 0, sizeof(*a));
}

void acme_reply_free(acme_reply *r)
{
    json_decref(r->json);
    free(r->location);
    free(r->retry_after);
    buf_free(&r->body);
    memset(r, 0, sizeof(*r));
}

static bool is_json_type(const char *ctype)
{
    return ctype && (strncmp(ctype, "application/json", 16) == 0 ||
                     strncmp(ctype, "application/problem+json", 24) == 0);
}

/* Move an HTTP response into a reply. -1 when it says JSON but is not. */
int acme_reply_take(fetch_response *h, acme_reply *r)
{
    memset(r, 0, sizeof(*r));
    r->status = h->status;
    r->location = h->location, h->location = NULL;
    r->retry_after = h->retry_after, h->retry_after = NULL;
    r->body = h->body;
    buf_init(&h->body, 0);
    if (is_json_type(h->content_type)) {
        json_error_t err;
        r->json = json_loadb(buf_head(&r->body), buf_used(&r->body), 0, &err);
        if (!r->json) {
            log_error("malformed JSON from the CA (HTTP %ld): %s at line %d", r->status, err.text,
                      err.line);
            return -1;
        }
    }
    return 0;
}

static bool nonce_ok(const char *n)
{
    if (!n || !*n || strlen(n) > ACME_MAX_NONCE)
        return false;
    return strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
           strlen(n);
}

static void keep_nonce(acme_ctx *a, fetch_response *h)
{
    free(a->nonce);
    a->nonce = NULL;
    if (nonce_ok(h->nonce)) {
        a->nonce = h->nonce;
        h->nonce = NULL;
    }
}

const char *acme_dir_url(acme_ctx *a, const char *name)
{
    const char *u = certd_json_str(a->dir, name);
    return u && strncmp(u, "https://", 8) == 0 ? u : NULL;
}

int acme_directory(acme_ctx *a)
{
    acme_reply r;
    if (acme_get(a, a->dir_url, &r) < 0) {
        acme_reply_free(&r);
        return -1;
    }
    a->dir = r.json, r.json = NULL;
    acme_reply_free(&r);
    static const char *const needed[] = {"newNonce", "newAccount", "newOrder"};
    for (size_t i = 0; i < 3; i++) {
        if (!acme_dir_url(a, needed[i])) {
            log_error("%s: not an ACME directory (no https %s URL)", a->dir_url, needed[i]);
            return -1;
        }
    }
    return 0;
}

int acme_get(acme_ctx *a, const char *url, acme_reply *r)
{
    fetch_response h;
    memset(r, 0, sizeof(*r));
    if (fetch_request(&a->http, "GET", url, NULL, NULL, &h) < 0)
        return -1;
    int rc = acme_reply_take(&h, r);
    fetch_response_free(&h);
    if (rc == 0 && (r->status < 200 || r->status > 299 || !json_is_object(r->json))) {
        log_error("GET %s: HTTP %ld%s", url, r->status,
                  json_is_object(r->json) ? "" : ", not a JSON object");
        rc = -1;
    }
    return rc;
}

static int new_nonce(acme_ctx *a)
{
    fetch_response h;
    if (fetch_request(&a->http, "HEAD", acme_dir_url(a, "newNonce"), NULL, NULL, &h) < 0)
        return -1;
    keep_nonce(a, &h);
    fetch_response_free(&h);
    if (!a->nonce) {
        log_error("the CA sent no usable Replay-Nonce");
        return -1;
    }
    return 0;
}

int64_t acme_retry_delay_ms(const acme_reply *r, int64_t fallback_ms)
{
    int64_t s;
    if (r->retry_after && schedule_retry_after(r->retry_after, time(NULL), &s) == 0)
        return s * 1000;
    return fallback_ms;
}

int acme_sleep(acme_ctx *a, int64_t ms)
{
    if (wait_now_ms() + ms > a->deadline_ms) {
        log_error("giving up: waiting %lld ms more would pass the time limit", (long long)ms);
        return -1;
    }
    if (wait_through_hup(ms) != 0) {
        log_error("interrupted");
        return -1;
    }
    return 0;
}

static const char *or_q(const char *s)
{
    return s ? s : "?";
}

void acme_log_problem(const char *url, const acme_reply *r)
{
    const char *type = certd_json_str(r->json, "type"), *detail = certd_json_str(r->json, "detail");
    log_error("%s: HTTP %ld %s: %s", url, r->status, type ? type : "(no problem type)",
              detail ? detail : "(no detail)");
    json_t *subs = json_is_object(r->json) ? json_object_get(r->json, "subproblems") : NULL;
    size_t i;
    json_t *sp;
    json_array_foreach(subs, i, sp)
    {
        const char *value = certd_json_str(json_object_get(sp, "identifier"), "value");
        log_error("  %s: %s: %s", value ? value : "?", or_q(certd_json_str(sp, "type")),
                  or_q(certd_json_str(sp, "detail")));
    }
}

static bool problem_is(const acme_reply *r, const char *name)
{
    const char *type = certd_json_str(r->json, "type");
    const char *prefix = "urn:ietf:params:acme:error:";
    return type && strncmp(type, prefix, strlen(prefix)) == 0 &&
           strcmp(type + strlen(prefix), name) == 0;
}

/* The wait before retrying a server that failed `tries` times: doubling, jittered. */
static int64_t server_retry_ms(int tries)
{
    int64_t d = backoff_delay_ms(ACME_RETRY_MIN_MS, ACME_RETRY_MAX_MS, (unsigned)tries);
    return backoff_jitter_ms(d, wait_random());
}

/* One signed POST; 1 when it should be retried (after *delay_ms), 0 done, -1 failed. */
static int post_once(acme_ctx *a, const char *url, const char *payload, acme_reply *r,
                     int *server_tries, int64_t *delay_ms)
{
    *delay_ms = 0;
    if (!a->nonce && new_nonce(a) < 0) {
        *delay_ms = server_retry_ms(*server_tries);
        return ++*server_tries <= ACME_SERVER_RETRIES && !wait_stop_requested() ? 1 : -1;
    }
    json_t *jws = jws_sign(a->key, a->kid, a->nonce, url, payload);
    char *body = jws ? json_dumps(jws, JSON_COMPACT) : NULL;
    json_decref(jws);
    free(a->nonce);
    a->nonce = NULL;
    if (!body) {
        log_error("cannot sign the request to %s", url);
        return -1;
    }
    fetch_response h;
    int rc = fetch_request(&a->http, "POST", url, "application/jose+json", body, &h);
    free(body);
    if (rc < 0) {
        *delay_ms = server_retry_ms(*server_tries);
        return ++*server_tries <= ACME_SERVER_RETRIES && !wait_stop_requested() ? 1 : -1;
    }
    keep_nonce(a, &h);
    rc = acme_reply_take(&h, r);
    fetch_response_free(&h);
    if (rc < 0)
        return -1;
    if (r->status >= 200 && r->status <= 299)
        return 0;
    if (r->status == 400 && problem_is(r, "badNonce"))
        return 1; /* the reply carried a fresh nonce */
    if (r->status == 429 || r->status >= 500) {
        int64_t fallback = server_retry_ms(*server_tries);
        *delay_ms = acme_retry_delay_ms(r, fallback);
        if (++*server_tries <= ACME_SERVER_RETRIES) {
            log_warn("%s: HTTP %ld, retrying in %lld ms", url, r->status, (long long)*delay_ms);
            return 1;
        }
    }
    acme_log_problem(url, r);
    return -1;
}

/* The signed POST of payload text (NULL: POST-as-GET), with its bounded retries. */
static int post_text(acme_ctx *a, const char *url, const char *payload, acme_reply *r)
{
    int bad_nonces = 0, server_tries = 0;
    for (;;) {
        int64_t delay;
        int rc = post_once(a, url, payload, r, &server_tries, &delay);
        if (rc <= 0)
            return rc;
        bool bad_nonce = r->status == 400;
        acme_reply_free(r);
        if (bad_nonce) {
            if (++bad_nonces > ACME_BADNONCE_RETRIES) {
                log_error("%s: the CA rejected %d nonces in a row", url, bad_nonces);
                return -1;
            }
            log_debug("%s: badNonce, retrying with the fresh nonce", url);
            continue;
        }
        if (delay > 0 && acme_sleep(a, delay) < 0)
            return -1;
    }
}

int acme_post(acme_ctx *a, const char *url, json_t *payload, acme_reply *r)
{
    memset(r, 0, sizeof(*r));
    char *text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (!text || !url) {
        log_error("cannot build the request to %s", url ? url : "(not in the CA's directory)");
        free(text);
        return -1;
    }
    int rc = post_text(a, url, text, r);
    free(text);
    return rc;
}

int acme_post_as_get(acme_ctx *a, const char *url, acme_reply *r)
{
    memset(r, 0, sizeof(*r));
    return post_text(a, url, NULL, r);
}
