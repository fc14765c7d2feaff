/* The etcd client's calls (shared/etcd.h): ranges, puts, deletes, transactions and leases as
 * the gateway's JSON, and the status lines of `hearth check --online`. Reaching the endpoints
 * is etcd_transport.c's job, the watch etcd_watch.c's. */
#include "shared/etcd_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ETCD_DEFAULT_TIMEOUT_MS 5000

/* ---- the client ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

/* curl's global set-up, once per process, whichever thread opens the first client. */
static void init_curl(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool valid_endpoint(const char *e)
{
    const char *rest = strncmp(e, "http://", 7) == 0    ? e + 7
                       : strncmp(e, "https://", 8) == 0 ? e + 8
                                                        : NULL;
    return rest && *rest && *rest != '/' && !strpbrk(e, " \t\r\n");
}

/* Why the options cannot make a client, or NULL. */
static const char *options_problem(const etcd_options *o)
{
    if (o->endpoints.count == 0)
        return "no etcd endpoint given";
    for (size_t i = 0; i < o->endpoints.count; i++)
        if (!valid_endpoint(o->endpoints.items[i]))
            return "an etcd endpoint is not an http:// or https:// URL";
    if (!o->cert != !o->key)
        return "etcd's client certificate and key go together";
    if (o->username && !o->password)
        return "an etcd username needs a password";
    if (o->timeout_ms < 0)
        return "the etcd timeout is negative";
    const char *files[] = {o->ca, o->cert, o->key};
    for (size_t i = 0; i < 3; i++)
        if (files[i] && access(files[i], R_OK) != 0)
            return "a file of etcd's TLS (ca, cert or key) cannot be read";
    return NULL;
}

static char *dup_or_null(const char *s, bool *ok)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *ok = false;
    return d;
}

static bool copy_options(etcd_client *c, const etcd_options *o)
{
    bool ok = strlist_copy(&c->endpoints, &o->endpoints) == 0;
    for (size_t i = 0; ok && i < c->endpoints.count; i++) {
        char *e = c->endpoints.items[i];
        size_t n = strlen(e);
        while (n > 0 && e[n - 1] == '/') /* paths are appended: "/v3/kv/range" */
            e[--n] = '\0';
    }
    c->ca = dup_or_null(o->ca, &ok);
    c->cert = dup_or_null(o->cert, &ok);
    c->key = dup_or_null(o->key, &ok);
    c->username = dup_or_null(o->username, &ok);
    c->password = dup_or_null(o->password, &ok);
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : ETCD_DEFAULT_TIMEOUT_MS;
    return ok;
}

etcd_client *etcd_open(const etcd_options *o, char *err, size_t errlen)
{
    const char *problem = options_problem(o);
    if (problem) {
        snprintf(err, errlen, "%s", problem);
        return NULL;
    }
    pthread_once(&curl_once, init_curl);
    if (curl_init_result != CURLE_OK) {
        snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(curl_init_result));
        return NULL;
    }
    etcd_client *c = calloc(1, sizeof(*c));
    if (!c || !copy_options(c, o) || !(c->curl = curl_easy_init()) ||
        !(c->multi = curl_multi_init())) {
        snprintf(err, errlen, "out of memory");
        etcd_close(c);
        return NULL;
    }
    return c;
}

void etcd_close(etcd_client *c)
{
    if (!c)
        return;
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    strlist_clear(&c->endpoints);
    free(c->ca);
    free(c->cert);
    free(c->key);
    free(c->username);
    if (c->password)
        explicit_bzero(c->password, strlen(c->password));
    free(c->password);
    free(c->token);
    free(c);
}

const char *etcd_error(const etcd_client *c)
{
    return c->error;
}

void etcd_kv_free(etcd_kv *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

void etcd_range_free(etcd_range *r)
{
    for (size_t i = 0; i < r->count; i++)
        etcd_kv_free(&r->kvs[i]);
    free(r->kvs);
    memset(r, 0, sizeof(*r));
}

/* ---- keys ---- */

/* {"key": base64(key)}, with "range_end" covering every key under it when prefix. */
static json_t *key_request(const char *key, bool prefix)
{
    json_t *body = json_object();
    if (!body || json_object_set_new(body, "key", etcd_json_bytes(key, strlen(key))) < 0 ||
        (prefix && json_object_set_new(body, "range_end", etcd_json_prefix_end(key)) < 0)) {
        json_decref(body);
        return NULL;
    }
    return body;
}

static int malformed(etcd_client *c, json_t *answer, const char *what)
{
    etcd_set_error(c, "etcd's answer to %s is malformed", what);
    json_decref(answer);
    return ETCD_ERR;
}

/* The store's revision an answer was given at: always there, and from 1 on. */
static bool store_revision(const json_t *answer, int64_t *revision)
{
    return etcd_header_revision(answer, revision) && *revision > 0;
}

/* The kvs of a range answer into out (zeroed first). */
static bool range_from_json(const json_t *answer, etcd_range *out)
{
    memset(out, 0, sizeof(*out));
    const json_t *kvs = json_object_get(answer, "kvs");
    if (!store_revision(answer, &out->revision) || (kvs && !json_is_array(kvs)))
        return false;
    size_t n = json_array_size(kvs);
    if (n == 0)
        return true;
    out->kvs = calloc(n, sizeof(*out->kvs));
    if (!out->kvs)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!etcd_kv_from_json(json_array_get(kvs, i), &out->kvs[i])) {
            etcd_range_free(out);
            return false;
        }
        out->count++;
    }
    return true;
}

static int range(etcd_client *c, const char *key, bool prefix, etcd_range *out)
{
    memset(out, 0, sizeof(*out));
    json_t *body = key_request(key, prefix), *answer;
    if (body && prefix) /* sorted by key, as etcd.h promises, whatever etcd's default */
        json_object_set_new(body, "sort_target", json_string("KEY")),
            json_object_set_new(body, "sort_order", json_string("ASCEND"));
    int rc = etcd_call(c, "/v3/kv/range", body, ETCD_READ, &answer);
    if (rc != 0)
        return rc == ETCD_NOT_FOUND ? ETCD_ERR : rc;
    if (!range_from_json(answer, out))
        return malformed(c, answer, "a range");
    json_decref(answer);
    return 0;
}

int etcd_get(etcd_client *c, const char *key, etcd_kv *out)
{
    etcd_range r;
    memset(out, 0, sizeof(*out));
    int rc = range(c, key, false, &r);
    if (rc != 0)
        return rc;
    if (r.count > 0) {
        *out = r.kvs[0];
        memset(&r.kvs[0], 0, sizeof(r.kvs[0]));
    }
    etcd_range_free(&r);
    if (out->key && strcmp(out->key, key) != 0) {
        etcd_set_error(c, "etcd answered a get of %s with another key", key);
        etcd_kv_free(out);
        return ETCD_ERR;
    }
    return out->key ? 0 : ETCD_NOT_FOUND;
}

int etcd_get_prefix(etcd_client *c, const char *prefix, etcd_range *out)
{
    return range(c, prefix, true, out);
}

/* {"key": .., "value": .., "lease": ..}: a put request, alone or inside a transaction. */
static json_t *put_request(const char *key, const void *value, size_t len, int64_t lease)
{
    json_t *body = key_request(key, false);
    if (!body || json_object_set_new(body, "value", etcd_json_bytes(value, len)) < 0 ||
        (lease && json_object_set_new(body, "lease", etcd_json_int64_string(lease)) < 0)) {
        json_decref(body);
        return NULL;
    }
    return body;
}

/* A write whose answer only matters for its header's revision. */
static int write_call(etcd_client *c, const char *path, json_t *body, const char *what,
                      int64_t *revision)
{
    json_t *answer;
    int64_t rev;
    int rc = etcd_call(c, path, body, ETCD_WRITE, &answer);
    if (rc != 0)
        return rc == ETCD_NOT_FOUND ? ETCD_ERR : rc;
    if (!store_revision(answer, &rev))
        return malformed(c, answer, what);
    if (revision)
        *revision = rev;
    json_decref(answer);
    return 0;
}

int etcd_put(etcd_client *c, const char *key, const void *value, size_t len, int64_t lease,
             int64_t *revision)
{
    return write_call(c, "/v3/kv/put", put_request(key, value, len, lease), "a put", revision);
}

int etcd_delete(etcd_client *c, const char *key)
{
    return write_call(c, "/v3/kv/deleterange", key_request(key, false), "a delete", NULL);
}

int etcd_delete_prefix(etcd_client *c, const char *prefix)
{
    return write_call(c, "/v3/kv/deleterange", key_request(prefix, true), "a delete", NULL);
}

/* ---- transactions ---- */

static json_t *compare_json(const etcd_compare *cmp)
{
    bool create = cmp->target == ETCD_CMP_CREATE_REVISION;
    json_t *j = key_request(cmp->key, false);
    if (!j || json_object_set_new(j, "target", json_string(create ? "CREATE" : "MOD")) < 0 ||
        json_object_set_new(j, "result", json_string("EQUAL")) < 0 ||
        json_object_set_new(j, create ? "create_revision" : "mod_revision",
                            etcd_json_int64_string(cmp->revision)) < 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *op_json(const etcd_op *op)
{
    json_t *request = op->delete_ ? key_request(op->key, false)
                                  : put_request(op->key, op->value, op->len, op->lease);
    if (!request)
        return NULL;
    return json_pack("{s:o}", op->delete_ ? "request_delete_range" : "request_put", request);
}

static json_t *txn_request(const etcd_compare *cmp, size_t ncmp, const etcd_op *ops, size_t nops)
{
    json_t *compares = json_array(), *success = json_array();
    bool ok = compares && success;
    for (size_t i = 0; ok && i < ncmp; i++)
        ok = json_array_append_new(compares, compare_json(&cmp[i])) == 0;
    for (size_t i = 0; ok && i < nops; i++)
        ok = json_array_append_new(success, op_json(&ops[i])) == 0;
    if (!ok) {
        json_decref(compares);
        json_decref(success);
        return NULL;
    }
    return json_pack("{s:o, s:o}", "compare", compares, "success", success);
}

int etcd_txn(etcd_client *c, const etcd_compare *cmp, size_t ncmp, const etcd_op *ops, size_t nops,
             bool *applied, int64_t *revision)
{
    json_t *answer;
    int64_t rev;
    *applied = false;
    int rc = etcd_call(c, "/v3/kv/txn", txn_request(cmp, ncmp, ops, nops), ETCD_WRITE, &answer);
    if (rc != 0)
        return rc == ETCD_NOT_FOUND ? ETCD_ERR : rc;
    const json_t *succeeded = json_object_get(answer, "succeeded");
    if (!store_revision(answer, &rev) || (succeeded && !json_is_boolean(succeeded)))
        return malformed(c, answer, "a transaction");
    *applied = json_is_true(succeeded); /* false is left out of the gateway's JSON */
    if (revision)
        *revision = rev;
    json_decref(answer);
    return 0;
}

/* ---- leases ---- */

int etcd_lease_grant(etcd_client *c, int64_t ttl_s, int64_t *id)
{
    json_t *answer;
    int64_t granted;
    int rc =
        etcd_call(c, "/v3/lease/grant", json_pack("{s:o}", "TTL", etcd_json_int64_string(ttl_s)),
                  ETCD_WRITE, &answer);
    if (rc != 0)
        return rc == ETCD_NOT_FOUND ? ETCD_ERR : rc;
    if (!etcd_json_int64(answer, "ID", &granted) || granted == 0)
        return malformed(c, answer, "a lease grant");
    *id = granted;
    json_decref(answer);
    return 0;
}

int etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t *ttl_left)
{
    json_t *answer;
    *ttl_left = 0;
    /* keepalive is a stream in gRPC: the gateway answers one request with {"result": ..} */
    int rc = etcd_call(c, "/v3/lease/keepalive",
                       json_pack("{s:o}", "ID", etcd_json_int64_string(id)), ETCD_WRITE, &answer);
    if (rc != 0)
        return rc;
    const json_t *result = json_object_get(answer, "result");
    if (!json_is_object(result) || !etcd_json_int64(result, "TTL", ttl_left))
        return malformed(c, answer, "a lease keepalive");
    json_decref(answer);
    if (*ttl_left > 0)
        return 0;
    etcd_set_error(c, "lease %" PRIx64 " has expired", (uint64_t)id);
    return ETCD_NOT_FOUND; /* etcd answers an unknown lease with no TTL */
}

int etcd_lease_revoke(etcd_client *c, int64_t id)
{
    json_t *answer;
    int rc = etcd_call(c, "/v3/lease/revoke", json_pack("{s:o}", "ID", etcd_json_int64_string(id)),
                       ETCD_WRITE, &answer);
    json_decref(answer);
    return rc;
}
