/* One ACME order, newOrder to downloaded chain (RFC 8555 7.4); the challenge files it writes
 * are removed whatever the outcome. */
#include "certd/certd.h"

#include <stdlib.h>
#include <string.h>

#include "shared/backoff.h"
#include "shared/log.h"

#define POLL_FIRST_MS 200 /* with no Retry-After: 0.2 s, doubling up to POLL_MAX_MS */
#define POLL_MAX_MS 5000
#define POLL_RETRY_AFTER_MAX_MS 60000

typedef struct {
    char *tokens[CERTD_MAX_NAMES];
    size_t count;
} token_list;

static bool in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static void log_object_error(const char *what, const json_t *obj)
{
    json_t *err = json_object_get(obj, "error");
    const char *type = certd_json_str(err, "type"), *detail = certd_json_str(err, "detail");
    if (type || detail)
        log_error("%s: %s: %s", what, type ? type : "?", detail ? detail : "?");
}

/* POST-as-GET url until its status is ok_state; statuses in waiting mean "not yet". */
static int poll_until(acme_ctx *a, const char *url, const char *const *waiting,
                      const char *ok_state, acme_reply *out)
{
    for (unsigned polls = 0;; polls++) {
        if (acme_post_as_get(a, url, out) < 0)
            return -1;
        const char *status = certd_json_str(out->json, "status");
        if (!status) {
            log_error("%s: the CA's reply has no status", url);
            return -1;
        }
        if (strcmp(status, ok_state) == 0)
            return 0;
        if (!in_list(status, waiting)) {
            log_error("%s: status %s (wanted %s)", url, status, ok_state);
            log_object_error(url, out->json);
            return -1;
        }
        int64_t d = acme_retry_delay_ms(out, backoff_delay_ms(POLL_FIRST_MS, POLL_MAX_MS, polls));
        /* Retry-After: 0 must not turn into a busy loop, nor a huge one into a stall */
        if (d < POLL_FIRST_MS)
            d = POLL_FIRST_MS;
        if (d > POLL_RETRY_AFTER_MAX_MS)
            d = POLL_RETRY_AFTER_MAX_MS;
        acme_reply_free(out);
        if (acme_sleep(a, d) < 0)
            return -1;
    }
}

static const json_t *find_http01(const json_t *authz)
{
    const json_t *chs = json_object_get(authz, "challenges"), *ch;
    size_t i;
    json_array_foreach(chs, i, ch)
    {
        const char *type = certd_json_str(ch, "type");
        if (type && strcmp(type, "http-01") == 0)
            return ch;
    }
    return NULL;
}

/* The key authorization where the CA will look: this host's webroot, and in a cluster every
 * host's (through etcd, confirmed by each before the CA is told). */
static int answer_challenge(const certd_opts *o, const char *token, const char *key_auth)
{
    if (challenge_write(o->webroot, token, key_auth) < 0)
        return -1;
    if (!o->cluster)
        return 0;
    return cluster_challenge_put(o->cluster, token, key_auth) == 0 &&
                   cluster_challenge_wait(o->cluster, token) == 0
               ? 0
               : -1;
}

static void withdraw_challenge(const certd_opts *o, const char *token)
{
    challenge_remove(o->webroot, token);
    if (o->cluster)
        cluster_challenge_remove(o->cluster, token);
}

/* Write the key authorization and tell the CA to look. 0 also when already valid. */
static int start_authz(acme_ctx *a, const certd_opts *o, const char *url, const char *thumb,
                       token_list *tokens)
{
    acme_reply r;
    if (acme_post_as_get(a, url, &r) < 0) {
        acme_reply_free(&r);
        return -1;
    }
    const char *status = certd_json_str(r.json, "status");
    const char *name = certd_json_str(json_object_get(r.json, "identifier"), "value");
    int rc = -1;
    if (status && strcmp(status, "valid") == 0) {
        rc = 0; /* the CA remembers an earlier validation */
    } else if (!status || strcmp(status, "pending") != 0) {
        log_error("authorization for %s is %s", name ? name : "?", status ? status : "missing");
    } else {
        const json_t *ch = find_http01(r.json);
        const char *token = certd_json_str(ch, "token"), *ch_url = certd_json_str(ch, "url");
        if (!ch || !challenge_token_ok(token) || !ch_url || tokens->count >= CERTD_MAX_NAMES) {
            log_error("authorization for %s offers no usable http-01 challenge", name ? name : "?");
        } else {
            char key_auth[600];
            snprintf(key_auth, sizeof(key_auth), "%s.%s", token, thumb);
            tokens->tokens[tokens->count++] = strdup(token);
            acme_reply cr;
            memset(&cr, 0, sizeof(cr));
            rc = answer_challenge(o, token, key_auth) == 0 &&
                         acme_post(a, ch_url, json_object(), &cr) == 0
                     ? 0
                     : -1;
            acme_reply_free(&cr);
        }
    }
    acme_reply_free(&r);
    return rc;
}

static int authorize_all(acme_ctx *a, const certd_opts *o, const json_t *order, token_list *tokens)
{
    const json_t *authzs = json_object_get(order, "authorizations"), *u;
    char *thumb = jws_thumbprint(a->key);
    size_t i;
    int rc = json_is_array(authzs) && json_array_size(authzs) > 0 && thumb ? 0 : -1;
    if (rc < 0)
        log_error("the order lists no authorizations");
    /* Answer every challenge first, then poll: the CA validates them in parallel. */
    json_array_foreach(authzs, i, u)
    {
        if (rc == 0 &&
            (!json_is_string(u) || start_authz(a, o, json_string_value(u), thumb, tokens) < 0))
            rc = -1;
    }
    static const char *const waiting[] = {"pending", NULL};
    json_array_foreach(authzs, i, u)
    {
        acme_reply r;
        memset(&r, 0, sizeof(r));
        if (rc == 0 && poll_until(a, json_string_value(u), waiting, "valid", &r) < 0) {
            const json_t *ch = find_http01(r.json);
            log_object_error("challenge", ch);
            rc = -1;
        }
        acme_reply_free(&r);
    }
    free(thumb);
    return rc;
}

static int new_order(acme_ctx *a, const certd_names *names, const char *replaces, acme_reply *r)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < names->count; i++)
        json_array_append_new(ids,
                              json_pack("{s:s, s:s}", "type", "dns", "value", names->names[i]));
    json_t *p = json_pack("{s:o}", "identifiers", ids);
    if (replaces)
        json_object_set_new(p, "replaces", json_string(replaces));
    int rc = acme_post(a, acme_dir_url(a, "newOrder"), p, r);
    if (rc == 0 && (!r->location || !json_is_object(r->json))) {
        log_error("newOrder: the CA sent no order URL");
        rc = -1;
    }
    return rc;
}

/* Finalize with a CSR for a new key, wait until valid; *cert_url from the order. */
static int finalize(acme_ctx *a, const certd_opts *o, const certd_names *names,
                    const char *order_url, const json_t *order, EVP_PKEY **key, char **cert_url)
{
    const char *fin = certd_json_str(order, "finalize");
    *key = key_generate(o->key_type);
    size_t derlen = 0;
    unsigned char *der = *key ? csr_build(*key, names, &derlen) : NULL;
    char *csr = der ? b64url_encode(der, derlen) : NULL;
    OPENSSL_free(der);
    if (!fin || !csr) {
        log_error(fin ? "cannot build the CSR" : "the order has no finalize URL");
        free(csr);
        return -1;
    }
    acme_reply r;
    int rc = acme_post(a, fin, json_pack("{s:s}", "csr", csr), &r);
    free(csr);
    /* After finalize only "processing" may turn into "valid"; "ready" again would mean the
     * CA ignored the CSR, and waiting for it would only run into the time limit. */
    static const char *const waiting[] = {"processing", NULL};
    const char *status = certd_json_str(r.json, "status");
    if (rc == 0 && !(status && (strcmp(status, "valid") == 0 || in_list(status, waiting)))) {
        log_error("%s: status %s after finalize", fin, status ? status : "missing");
        log_object_error(fin, r.json);
        rc = -1;
    } else if (rc == 0 && strcmp(status, "valid") != 0) {
        acme_reply_free(&r);
        rc = poll_until(a, order_url, waiting, "valid", &r);
    }
    const char *cu = certd_json_str(r.json, "certificate");
    if (rc == 0 && !cu) {
        log_error("the valid order has no certificate URL");
        rc = -1;
    }
    if (rc == 0)
        *cert_url = strdup(cu);
    acme_reply_free(&r);
    return rc;
}

static int download(acme_ctx *a, const char *url, const certd_names *names, EVP_PKEY *key,
                    order_result *out)
{
    acme_reply r;
    int rc = acme_post_as_get(a, url, &r);
    char err[256];
    if (rc == 0 &&
        certinfo_check(buf_head(&r.body), buf_used(&r.body), key, names, err, sizeof(err)) < 0) {
        log_error("%s: %s; nothing written", url, err);
        rc = -1;
    }
    if (rc == 0) {
        out->chain_len = buf_used(&r.body);
        out->chain = strndup(buf_head(&r.body), out->chain_len);
        rc = out->chain ? 0 : -1;
    }
    acme_reply_free(&r);
    return rc;
}

static int run_order(acme_ctx *a, const certd_opts *o, const certd_names *names,
                     const char *replaces, token_list *tokens, order_result *out)
{
    acme_reply r;
    int rc = new_order(a, names, replaces, &r);
    char *order_url = rc == 0 ? strdup(r.location) : NULL;
    const char *status = certd_json_str(r.json, "status");
    if (rc == 0 && status && strcmp(status, "ready") != 0)
        rc = authorize_all(a, o, r.json, tokens);
    static const char *const waiting[] = {"pending", NULL};
    if (rc == 0 && !(status && strcmp(status, "ready") == 0)) {
        acme_reply_free(&r);
        rc = poll_until(a, order_url, waiting, "ready", &r);
    }
    char *cert_url = NULL;
    if (rc == 0)
        rc = finalize(a, o, names, order_url, r.json, &out->key, &cert_url);
    if (rc == 0)
        rc = download(a, cert_url, names, out->key, out);
    acme_reply_free(&r);
    free(order_url);
    free(cert_url);
    return rc;
}

int order_run(acme_ctx *a, const certd_opts *o, const certd_names *names, const char *replaces,
              order_result *out)
{
    memset(out, 0, sizeof(*out));
    token_list tokens = {.count = 0};
    a->deadline_ms = wait_now_ms() + o->timeout_ms;
    int rc = run_order(a, o, names, replaces, &tokens, out);
    for (size_t i = 0; i < tokens.count; i++) {
        withdraw_challenge(o, tokens.tokens[i]);
        free(tokens.tokens[i]);
    }
    if (rc < 0)
        order_result_free(out);
    return rc;
}

void order_result_free(order_result *r)
{
    free(r->chain);
    EVP_PKEY_free(r->key);
    memset(r, 0, sizeof(*r));
}
