/* Several hosts, one set of certificates (docs/cluster.md): the etcd side of certd. A host
 * orders a certificate only holding its lock (a key bound to the host's lease), and publishes
 * the result with a transaction that still finds that lock and the certificate it read, so a
 * host that lost its lease, or a partitioned one, can never overwrite what another wrote. Every
 * host keeps the last good copy in its local store, which the edge serves from. */
#include "certd/cluster.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/cluster.h"
#include "shared/log.h"

#define ACK_POLL_MS 50

static void key_of(const cluster *c, char *out, size_t len, const char *fmt, ...)
{
    int n = snprintf(out, len, "%s", c->cfg->prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, len - (size_t)n, fmt, ap);
    va_end(ap);
}

etcd_client *cluster_client(const cluster *c)
{
    char err[512];
    etcd_client *e = cluster_etcd_open(c->cfg, err, sizeof(err));
    if (!e)
        log_error("cluster: %s", err);
    return e;
}

cluster *cluster_open(const config_cluster *cfg, const char *state_dir)
{
    cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->cfg = cfg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->store_mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (cfg->host)
        snprintf(c->host, sizeof(c->host), "%s", cfg->host);
    else if (gethostname(c->host, sizeof(c->host) - 1) < 0)
        snprintf(c->host, sizeof(c->host), "unknown");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cluster", state_dir ? state_dir : ".");
    c->state_dir = strdup(path);
    c->sealed = cfg->secret_key_file != NULL;
    if (!c->state_dir || (c->sealed && seal_key_load(cfg->secret_key_file, c->seal_key) < 0)) {
        cluster_close(c);
        return NULL;
    }
    lease_take_over(c);
    if (!(c->etcd = cluster_client(c))) {
        cluster_close(c);
        return NULL;
    }
    log_info("cluster: host %s, etcd %s%s, prefix %s, private keys %s", c->host, cfg->etcd.items[0],
             cfg->etcd.count > 1 ? " and others" : "", cfg->prefix,
             c->sealed ? "encrypted" : "UNENCRYPTED (plaintext_secrets: true)");
    return c;
}

void cluster_close(cluster *c)
{
    if (!c)
        return;
    cluster_sync_stop(c);
    lease_stop(c);
    etcd_close(c->etcd);
    OPENSSL_cleanse(c->seal_key, sizeof(c->seal_key));
    free(c->state_dir);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->store_mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

const unsigned char *cluster_seal_key(const cluster *c)
{
    return c->sealed ? c->seal_key : NULL;
}

/* ---- certificates ---- */

static void names_from_meta(json_t *meta, const char *name, certd_names *n, char **buf)
{
    json_t *doms = json_object_get(meta, "domains"), *d;
    size_t i, k = 0;
    json_array_foreach(doms, i, d)
    {
        if (json_is_string(d) && k < CERTD_MAX_NAMES)
            buf[k++] = (char *)json_string_value(d);
    }
    if (k == 0)
        buf[k++] = (char *)name;
    n->names = buf;
    n->count = k;
}

/* Whether the certificate from etcd should replace the local one: a newer one only, so that
 * an old copy coming back from a partition never undoes a renewal. */
static bool should_take(const certd_opts *o, const char *name, const cert_info *remote)
{
    cert_info local;
    char *chain = NULL, err[128];
    size_t len = 0;
    json_t *meta = NULL;
    if (store_load(o->cert_dir, name, &chain, &len, NULL, NULL, &meta) < 0)
        return true;
    json_decref(meta);
    int rc = certinfo_parse(chain, len, &local, err, sizeof(err));
    free(chain);
    if (rc < 0)
        return true;
    bool take = strcmp(local.serial, remote->serial) != 0;
    if (take && local.not_before > remote->not_before) {
        log_warn("%s: etcd holds an older certificate (serial %s) than this host's (%s); "
                 "keeping this host's",
                 name, remote->serial, local.serial);
        take = false;
    }
    certinfo_free(&local);
    return take;
}

/* Check what etcd holds (the key opens, matches the chain, the names are covered), then
 * store it. */
static int take_cert(cluster *c, const certd_opts *o, const char *name, json_t *doc, bool *changed)
{
    const char *chain = certd_json_str(doc, "chain"), *sealed = certd_json_str(doc, "key");
    json_t *meta = json_object_get(doc, "meta");
    char aad[512], err[256];
    key_of(c, aad, sizeof(aad), "certs/%s", name);
    if (!chain || !sealed || !json_is_object(meta)) {
        log_error("%s: not a certificate hearth stored", aad);
        return -1;
    }
    size_t key_len = 0;
    unsigned char *key = seal_open(cluster_seal_key(c), aad, sealed, &key_len);
    EVP_PKEY *pkey = key ? key_from_pem((const char *)key, key_len) : NULL;
    char *buf[CERTD_MAX_NAMES];
    certd_names names;
    names_from_meta(meta, name, &names, buf);
    cert_info info;
    int rc = -1;
    if (!pkey) {
        log_error("%s: its private key cannot be used", aad);
    } else if (certinfo_check(chain, strlen(chain), pkey, &names, err, sizeof(err)) < 0) {
        log_error("%s: refused: %s", aad, err);
    } else if (certinfo_parse(chain, strlen(chain), &info, err, sizeof(err)) == 0) {
        rc = 0;
        if (should_take(o, name, &info)) {
            rc = store_save(o->cert_dir, name, chain, strlen(chain), (const char *)key, key_len,
                            meta);
            const char *by = certd_json_str(doc, "host");
            if (rc == 0) {
                *changed = true;
                log_info("%s: certificate %s from etcd (ordered by %s) stored", name, info.serial,
                         by ? by : "?");
            }
        }
        certinfo_free(&info);
    }
    EVP_PKEY_free(pkey);
    if (key)
        OPENSSL_cleanse(key, key_len);
    free(key);
    return rc;
}

int cluster_import(cluster *c, const certd_opts *o, const char *name, const char *value, size_t len,
                   bool *changed)
{
    if (!store_name_ok(name)) {
        log_warn("cluster: ignoring a certificate under an unusable name");
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(value, len, 0, &jerr);
    if (!doc) {
        log_error("cluster: certificate %s in etcd is not JSON: %s", name, jerr.text);
        return -1;
    }
    pthread_mutex_lock(&c->store_mu);
    int rc = take_cert(c, o, name, doc, changed);
    pthread_mutex_unlock(&c->store_mu);
    json_decref(doc);
    return rc;
}

/* ---- the lock of one certificate ---- */

/* The lock key exists and is not ours: who holds it, for the log. */
static int lock_busy(cluster *c, const char *key, int64_t lease, cluster_lock *l)
{
    etcd_kv kv;
    int rc = etcd_get(c->etcd, key, &kv);
    if (rc == ETCD_ERR)
        return -1;
    if (rc == ETCD_NOT_FOUND) /* released meanwhile: the next try may take it */
        return CLUSTER_BUSY;
    if (kv.lease == lease) { /* ours, from an attempt of this process that did not release */
        l->lock_rev = kv.create_revision;
        etcd_kv_free(&kv);
        return 0;
    }
    log_info("%s: host %.*s is ordering it; its certificate will arrive through etcd", l->name,
             (int)(kv.value_len > 255 ? 255 : kv.value_len), (const char *)kv.value);
    etcd_kv_free(&kv);
    return CLUSTER_BUSY;
}

/* The certificate etcd holds now: taken into the local store when newer, and its revision
 * remembered for the fenced publish. */
static int read_current(cluster *c, const certd_opts *o, cluster_lock *l, bool *changed)
{
    char key[512];
    key_of(c, key, sizeof(key), "certs/%s", l->name);
    etcd_kv kv;
    int rc = etcd_get(c->etcd, key, &kv);
    if (rc == ETCD_ERR)
        return -1;
    l->cert_rev = rc == 0 ? kv.mod_revision : 0;
    if (rc == 0) {
        cluster_import(c, o, l->name, (const char *)kv.value, kv.value_len, changed);
        etcd_kv_free(&kv);
    }
    return 0;
}

int cluster_lock_take(cluster *c, const certd_opts *o, const char *name, cluster_lock *l,
                      bool *changed)
{
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    int64_t lease = lease_current(c, c->etcd);
    char key[512];
    key_of(c, key, sizeof(key), "locks/%s", name);
    etcd_compare cmp = {key, ETCD_CMP_CREATE_REVISION, 0};
    etcd_op op = {.key = key, .value = c->host, .len = strlen(c->host), .lease = lease};
    bool applied = false;
    int64_t rev = 0;
    int rc = lease > 0 ? etcd_txn(c->etcd, &cmp, 1, &op, 1, &applied, &rev) : ETCD_ERR;
    if (rc == 0 && applied)
        l->lock_rev = rev;
    else if (rc == 0)
        rc = lock_busy(c, key, lease, l);
    if (rc == 0 && read_current(c, o, l, changed) < 0) {
        cluster_lock_release(c, l);
        rc = ETCD_ERR;
    }
    if (rc == ETCD_ERR) {
        log_warn("%s: etcd cannot be reached (%s); the renewal waits for it", name,
                 etcd_error(c->etcd));
        return CLUSTER_BUSY;
    }
    return rc;
}

int cluster_lock_held(cluster *c, const cluster_lock *l)
{
    char key[512];
    key_of(c, key, sizeof(key), "locks/%s", l->name);
    etcd_kv kv;
    int rc = etcd_get(c->etcd, key, &kv);
    bool held = rc == 0 && kv.create_revision == l->lock_rev;
    if (rc == 0)
        etcd_kv_free(&kv);
    if (!held)
        log_error("%s: %s; the order stops before the CA issues anything", l->name,
                  rc == ETCD_ERR ? "etcd cannot be reached to confirm the lock"
                                 : "the lock was lost (lease expired) to another host");
    return held ? 0 : -1;
}

void cluster_lock_release(cluster *c, cluster_lock *l)
{
    if (!l->lock_rev)
        return;
    char key[512];
    key_of(c, key, sizeof(key), "locks/%s", l->name);
    /* only our own lock: a lock that expired and went to another host stays theirs */
    etcd_compare cmp = {key, ETCD_CMP_CREATE_REVISION, l->lock_rev};
    etcd_op op = {.key = key, .delete_ = true};
    bool applied;
    if (etcd_txn(c->etcd, &cmp, 1, &op, 1, &applied, NULL) < 0)
        log_warn("%s: releasing the lock: %s (it goes with the lease)", l->name,
                 etcd_error(c->etcd));
    l->lock_rev = 0;
}

static char *cert_doc(cluster *c, const char *name, const order_result *res, const char *key_pem,
                      size_t key_len, json_t *meta)
{
    char aad[512];
    key_of(c, aad, sizeof(aad), "certs/%s", name);
    char *sealed = seal_text(cluster_seal_key(c), aad, key_pem, key_len);
    json_t *doc = sealed ? json_pack("{s:s%, s:s, s:O, s:s}", "chain", res->chain, res->chain_len,
                                     "key", sealed, "meta", meta, "host", c->host)
                         : NULL;
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    free(sealed);
    return text;
}

int cluster_publish(cluster *c, const certd_opts *o, const cluster_lock *l, const order_result *res,
                    const char *key_pem, size_t key_len, json_t *meta, bool *changed)
{
    char lock_key[512], cert_key[512];
    key_of(c, lock_key, sizeof(lock_key), "locks/%s", l->name);
    key_of(c, cert_key, sizeof(cert_key), "certs/%s", l->name);
    char *doc = cert_doc(c, l->name, res, key_pem, key_len, meta);
    if (!doc)
        return -1;
    /* Fencing: still our lock, and nobody wrote the certificate since we read it. */
    etcd_compare cmp[] = {{lock_key, ETCD_CMP_CREATE_REVISION, l->lock_rev},
                          {cert_key, ETCD_CMP_MOD_REVISION, l->cert_rev}};
    etcd_op op = {.key = cert_key, .value = doc, .len = strlen(doc)};
    bool applied = false;
    int rc = etcd_txn(c->etcd, cmp, 2, &op, 1, &applied, NULL);
    if (rc == 0 && applied)
        rc = cluster_import(c, o, l->name, doc, strlen(doc), changed);
    else if (rc == 0)
        log_error("%s: the lock was lost or another host published first: this certificate is "
                  "discarded",
                  l->name);
    else
        log_error("%s: publishing to etcd: %s; this certificate is discarded", l->name,
                  etcd_error(c->etcd));
    free(doc);
    return rc == 0 && applied ? 0 : -1;
}

/* ---- files every host must share: the ACME account key, the internal CA ---- */

/* etcd's copy written over the local files. */
static int write_local(cluster *c, const char *key, json_t *doc, const char *dir,
                       const cluster_file *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *text = certd_json_str(doc, f[i].name);
        char aad[768];
        snprintf(aad, sizeof(aad), "%s/%s", key, f[i].name);
        size_t len = 0;
        unsigned char *data = text ? (f[i].secret ? seal_open(cluster_seal_key(c), aad, text, &len)
                                                  : (unsigned char *)strdup(text))
                                   : NULL;
        if (data && !f[i].secret)
            len = strlen(text);
        int rc = data && store_mkdirs(dir, 0700) == 0
                     ? store_write_file(dir, f[i].name, data, len, f[i].mode)
                     : -1;
        if (data)
            OPENSSL_cleanse(data, len);
        free(data);
        if (rc < 0) {
            log_error("%s: %s cannot be taken from etcd", dir, f[i].name);
            return -1;
        }
    }
    return 0;
}

/* The local files as one document for etcd; NULL when one is missing. */
static char *local_doc(cluster *c, const char *key, const char *dir, const cluster_file *f,
                       size_t n)
{
    json_t *doc = json_object();
    for (size_t i = 0; doc && i < n; i++) {
        char path[PATH_MAX], aad[768];
        snprintf(path, sizeof(path), "%s/%s", dir, f[i].name);
        snprintf(aad, sizeof(aad), "%s/%s", key, f[i].name);
        size_t len = 0;
        char *data = store_read_file(path, 1 << 20, &len);
        char *value = data && f[i].secret ? seal_text(cluster_seal_key(c), aad, data, len) : data;
        if (!value || json_object_set_new(doc, f[i].name, json_stringn(value, strlen(value))) < 0) {
            json_decref(doc);
            doc = NULL;
        }
        if (data)
            OPENSSL_cleanse(data, len);
        if (value != data)
            free(value);
        free(data);
    }
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}

static int share_files(cluster *c, const char *what, const char *dir, const cluster_file *f,
                       size_t n)
{
    char key[512];
    key_of(c, key, sizeof(key), "%s", what);
    for (int round = 0; round < 2; round++) {
        etcd_kv kv;
        int rc = etcd_get(c->etcd, key, &kv);
        if (rc == ETCD_ERR) {
            log_error("%s: etcd: %s", key, etcd_error(c->etcd));
            return -1;
        }
        if (rc == 0) {
            json_t *doc = json_loadb((const char *)kv.value, kv.value_len, 0, NULL);
            rc = doc ? write_local(c, key, doc, dir, f, n) : -1;
            json_decref(doc);
            etcd_kv_free(&kv);
            return rc;
        }
        char *doc = local_doc(c, key, dir, f, n);
        if (!doc)
            return ETCD_NOT_FOUND; /* nothing here either: the caller creates it, then shares */
        /* first host to share it wins; the others take the winner's copy on the next round */
        etcd_compare cmp = {key, ETCD_CMP_CREATE_REVISION, 0};
        etcd_op op = {.key = key, .value = doc, .len = strlen(doc)};
        bool applied = false;
        rc = etcd_txn(c->etcd, &cmp, 1, &op, 1, &applied, NULL);
        free(doc);
        if (rc < 0)
            return -1;
        if (applied) {
            log_info("%s: shared through etcd", dir);
            return 0;
        }
    }
    return -1;
}

int cluster_share_files(cluster *c, const char *what, const char *dir, const cluster_file *f,
                        size_t n, int (*make)(void *arg), void *arg)
{
    int rc = share_files(c, what, dir, f, n);
    if (rc == ETCD_NOT_FOUND && make && make(arg) == 0)
        rc = share_files(c, what, dir, f, n); /* ours, or the copy of a host that came first */
    return rc == 0 ? 0 : -1;
}

/* ---- HTTP-01 tokens every host answers ---- */

int cluster_challenge_put(cluster *c, const char *token, const char *key_auth)
{
    char key[512];
    key_of(c, key, sizeof(key), "challenges/%s", token);
    int64_t lease = lease_current(c, c->etcd);
    if (lease <= 0 || etcd_put(c->etcd, key, key_auth, strlen(key_auth), lease, NULL) < 0) {
        log_error("challenge %s: cannot be shared through etcd: %s", token, etcd_error(c->etcd));
        return -1;
    }
    return 0;
}

static bool has_key(const etcd_range *r, size_t skip, const char *tail)
{
    for (size_t i = 0; i < r->count; i++)
        if (strlen(r->kvs[i].key) > skip && strcmp(r->kvs[i].key + skip, tail) == 0)
            return true;
    return false;
}

/* Live hosts (other than this one) whose ack of token is missing, listed in out. */
static int missing_acks(cluster *c, const char *token, char *out, size_t len)
{
    char hosts[512], acks[512];
    key_of(c, hosts, sizeof(hosts), "hosts/");
    key_of(c, acks, sizeof(acks), "acks/%s/", token);
    etcd_range h = {0}, a = {0};
    int missing = -1;
    if (etcd_get_prefix(c->etcd, hosts, &h) == 0 && etcd_get_prefix(c->etcd, acks, &a) == 0) {
        missing = 0;
        out[0] = '\0';
        for (size_t i = 0; i < h.count; i++) {
            const char *host = h.kvs[i].key + strlen(hosts);
            if (strcmp(host, c->host) != 0 && !has_key(&a, strlen(acks), host)) {
                size_t used = strlen(out);
                snprintf(out + used, len - used, "%s%s", missing++ ? ", " : "", host);
            }
        }
    }
    etcd_range_free(&h);
    etcd_range_free(&a);
    return missing;
}

int cluster_challenge_wait(cluster *c, const char *token)
{
    int64_t end = wait_now_ms() + c->cfg->challenge_wait_ms;
    char missing[1024];
    for (;;) {
        int n = missing_acks(c, token, missing, sizeof(missing));
        if (n == 0)
            return 0;
        if (n < 0 || wait_now_ms() >= end || wait_stop_requested()) {
            log_warn("challenge %s: not confirmed by %s within %lld ms; the CA may fail where "
                     "it asks them",
                     token, n < 0 ? "etcd" : missing, (long long)c->cfg->challenge_wait_ms);
            return n < 0 ? -1 : 0;
        }
        wait_through_hup(ACK_POLL_MS);
    }
}

void cluster_challenge_remove(cluster *c, const char *token)
{
    char key[512], acks[512];
    key_of(c, key, sizeof(key), "challenges/%s", token);
    key_of(c, acks, sizeof(acks), "acks/%s/", token);
    if (etcd_delete(c->etcd, key) < 0 || etcd_delete_prefix(c->etcd, acks) < 0)
        log_warn("challenge %s: left in etcd (%s); it goes with the lease", token,
                 etcd_error(c->etcd));
}
