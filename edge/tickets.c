/* Session-ticket keys. Each 12-hour period has its own keys, derived from a secret and the
 * period's number, so every worker agrees without talking and a key ages out after two periods.
 * The secret is this edge's own random one, made before the workers fork, or, for the periods
 * the cluster's ticket-keys file names (written by certd from etcd, docs/cluster.md), the
 * secret every host shares: then any host resumes a session any other host started.
 *
 * The file is read by one process per load (the master, or a lone worker) into a table in
 * shared memory; each worker copies the table in a reload's prepare step and uses the copy
 * from the commit step on, so all workers hold the same keys. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "shared/cluster.h"
#include "edge/edge.h"

#define TICKET_PERIOD_S (12 * 3600)
#define SHARED_MAX 16        /* periods the table holds; certd writes about three */
#define FILE_MAX (64 * 1024) /* a keys file larger than this is not one */
#define FILE_NAME "/cluster/ticket-keys.json"

typedef struct {
    uint64_t period;
    unsigned char secret[32];
} period_secret;

typedef struct {
    period_secret keys[SHARED_MAX];
    size_t count;
} secret_table;

/* Written by the loader, read by the workers: seq is odd while a load writes (a seqlock; the
 * master writes only between reloads, so a reader never waits in practice). */
typedef struct {
    _Atomic uint32_t seq;
    secret_table table;
} shared_secrets;

static unsigned char local_secret[32];
static shared_secrets *shared;
static char *file_flag; /* --ticket-keys, or NULL: derived from the config */
/* This process's copies: taken in prepare, used from commit on. */
static secret_table pending, current;

int edge_tickets_open(const char *path)
{
    if (RAND_bytes(local_secret, sizeof(local_secret)) != 1)
        abort();
    if (path && !(file_flag = strdup(path)))
        return -1;
    void *m =
        mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        log_error("ticket keys: cannot map %zu bytes: %s", sizeof(*shared), strerror(errno));
        return -1;
    }
    shared = m;
    return 0;
}

/* ---- the file ---- */

/* The keys file of cfg: --ticket-keys, else STATE_DIR/cluster/ticket-keys.json with a cluster
 * configured, else none (NULL). Malloc'ed. */
static char *file_path(const hearth_config *cfg)
{
    if (file_flag)
        return strdup(file_flag);
    if (cfg->cluster.etcd.count == 0 || !cfg->state_dir)
        return NULL;
    size_t len = strlen(cfg->state_dir) + sizeof(FILE_NAME);
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s%s", cfg->state_dir, FILE_NAME);
    return p;
}

/* 32 bytes from standard base64 (44 characters, one '='). */
static bool decode_secret(const char *b64, unsigned char out[32])
{
    unsigned char raw[33];
    if (strlen(b64) != 44 || b64[43] != '=' || b64[42] == '=')
        return false;
    if (EVP_DecodeBlock(raw, (const unsigned char *)b64, 44) != 33) /* counts the padding */
        return false;
    memcpy(out, raw, 32);
    return true;
}

/* One entry {"period": N, "secret": BASE64} into e; false when malformed. */
static bool parse_entry(json_t *k, period_secret *e)
{
    json_t *p = json_object_get(k, "period");
    const char *s = json_string_value(json_object_get(k, "secret"));
    if (!json_is_integer(p) || json_integer_value(p) < 0 || !s || !decode_secret(s, e->secret))
        return false;
    e->period = (uint64_t)json_integer_value(p);
    return true;
}

/* The file's keys into t; -1 with why when the file as a whole is unusable. Single entries that
 * are malformed, or beyond the table's room, are skipped and counted in *skipped. */
static int parse_keys(const char *text, size_t len, secret_table *t, size_t *skipped, char *why,
                      size_t whylen)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    json_t *keys = json_object_get(root, "keys");
    json_t *period_s = json_object_get(root, "period_s");
    int rc = -1;
    if (!root)
        snprintf(why, whylen, "not JSON (line %d: %s)", jerr.line, jerr.text);
    else if (json_integer_value(period_s) != TICKET_PERIOD_S)
        snprintf(why, whylen, "period_s is not %d, the edge's ticket period", TICKET_PERIOD_S);
    else if (!json_is_array(keys))
        snprintf(why, whylen, "no \"keys\" list");
    else
        rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(keys); i++) {
        if (t->count < SHARED_MAX && parse_entry(json_array_get(keys, i), &t->keys[t->count]))
            t->count++;
        else
            (*skipped)++;
    }
    json_decref(root);
    return rc;
}

static void publish(const secret_table *t)
{
    uint32_t seq = atomic_load_explicit(&shared->seq, memory_order_relaxed);
    atomic_store_explicit(&shared->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    shared->table = *t;
    atomic_store_explicit(&shared->seq, seq + 2, memory_order_release);
}

void edge_tickets_load(const hearth_config *cfg)
{
    char *path = file_path(cfg);
    if (!path) {
        publish(&(secret_table){.count = 0});
        return;
    }
    char why[256] = "";
    size_t len = 0, skipped = 0;
    secret_table t = {.count = 0};
    char *text = cluster_read_small(path, FILE_MAX, true, &len, why, sizeof(why));
    if (!text && errno == ENOENT) {
        if (shared->table.count > 0)
            log_info("ticket keys: %s is gone; this host's own secret from now on", path);
        publish(&t);
    } else if (!text || parse_keys(text, len, &t, &skipped, why, sizeof(why)) < 0) {
        log_warn("ticket keys: %s: %s; %s", path, why,
                 shared->table.count ? "keeping the keys loaded before"
                                     : "this host's own secret meanwhile");
    } else {
        if (skipped > 0)
            log_warn("ticket keys: %s: %zu entr%s ignored (malformed, or more than %d)", path,
                     skipped, skipped == 1 ? "y" : "ies", SHARED_MAX);
        log_info("ticket keys: %zu period(s) shared from %s", t.count, path);
        publish(&t);
    }
    free(text);
    free(path);
}

void edge_tickets_prepare(void)
{
    for (;;) {
        uint32_t before = atomic_load_explicit(&shared->seq, memory_order_acquire);
        if (before & 1)
            continue;
        pending = shared->table;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&shared->seq, memory_order_relaxed) == before)
            return;
    }
}

/* ---- the keys of a period ---- */

/* The three keys of a period, derived once per period rather than once per ticket. */
typedef struct {
    uint64_t period;
    bool valid;
    unsigned char name[16], aes[32], mac[32];
} ticket_keys;

static ticket_keys cache[2];

void edge_tickets_commit(void)
{
    current = pending;
    memset(cache, 0, sizeof(cache));
}

static const unsigned char *secret_of(uint64_t period)
{
    for (size_t i = 0; i < current.count; i++)
        if (current.keys[i].period == period)
            return current.keys[i].secret;
    return local_secret;
}

static void derive(const unsigned char *secret, uint64_t period, const char *label,
                   unsigned char out[32])
{
    unsigned char msg[24];
    size_t ll = strlen(label);
    memcpy(msg, label, ll);
    memcpy(msg + ll, &period, sizeof(period));
    unsigned int len = 32;
    HMAC(EVP_sha256(), secret, 32, msg, ll + sizeof(period), out, &len);
}

static const ticket_keys *keys_for(uint64_t period)
{
    ticket_keys *k = &cache[period & 1];
    if (!k->valid || k->period != period) {
        const unsigned char *secret = secret_of(period);
        unsigned char full[32];
        derive(secret, period, "name", full);
        memcpy(k->name, full, 16);
        derive(secret, period, "aes", k->aes);
        derive(secret, period, "mac", k->mac);
        k->period = period;
        k->valid = true;
    }
    return k;
}

static int set_keys(uint64_t period, unsigned char *iv, EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx,
                    int enc)
{
    const ticket_keys *k = keys_for(period);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->mac, sizeof(k->mac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    /* Fetched once: OpenSSL 3 looks a cipher up by name on every implicit use. */
    static EVP_CIPHER *aes;
    if (!aes && !(aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)))
        return -1;
    if (EVP_CipherInit_ex(ctx, aes, NULL, k->aes, iv, enc) != 1)
        return -1;
    return 0;
}

int edge_tickets_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ctx,
                    EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    uint64_t period = (uint64_t)time(NULL) / TICKET_PERIOD_S;
    if (enc) {
        memcpy(name, keys_for(period)->name, 16);
        if (RAND_bytes(iv, 16) != 1) /* the AES block size */
            return -1;
        return set_keys(period, iv, ctx, hctx, 1) == 0 ? 1 : -1;
    }
    for (uint64_t back = 0; back < 2; back++) {
        if (memcmp(keys_for(period - back)->name, name, 16) != 0)
            continue;
        if (set_keys(period - back, iv, ctx, hctx, 0) < 0)
            return -1;
        /* 2: accept and issue a fresh ticket. TLS 1.3 clients use a ticket once, so without a
         * fresh one every other connection would be a full handshake. */
        return 2;
    }
    return 0; /* unknown or too old: full handshake */
}
