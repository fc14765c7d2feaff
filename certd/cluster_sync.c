/* The daemon's second thread in a cluster: it watches PREFIX and brings what other hosts write
 * into this host's files, where the edge reads them: certificates into the local store,
 * challenge tokens into the webroot (each confirmed with acks/TOKEN/HOST, which the ordering
 * host waits for before the CA looks), ticket secrets into STATE_DIR/cluster/ticket-keys.json.
 * After a certificate or the ticket keys change, the edge reloads. Whenever the watch breaks
 * (etcd away, history compacted) it reads the whole prefix again. */
#include "certd/cluster.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"

#define WATCH_SLICE_MS 5000   /* a watch ends this often, for the ticket check and the logs */
#define RETRY_MS 1000         /* etcd out of reach: read everything again this often */
#define TICKET_PERIOD_S 43200 /* the edge's ticket period (edge/tls.c) */
#define TICKET_CHECK_MS 60000
#define TICKET_SECRET_LEN 32
#define KEY_AUTH_MAX 600

typedef struct {
    cluster *c;
    etcd_client *e; /* the watch's */
    etcd_client *w; /* writes made while the watch runs (a client does one call at a time) */
    const certd_opts *o;
    size_t plen;
    bool reload;        /* a certificate or the ticket keys changed: the edge reloads */
    bool tickets_dirty; /* tickets/ changed: the file is written again */
    bool down;          /* etcd was out of reach: said once, and once when it is back */
} sync_state;

static void ack_key(const sync_state *s, const char *token, char *out, size_t len)
{
    snprintf(out, len, "%sacks/%s/%s", s->c->cfg->prefix, token, s->c->host);
}

static void confirm_token(sync_state *s, const char *token)
{
    char key[512];
    ack_key(s, token, key, sizeof(key));
    int64_t lease = lease_current(s->c, s->w);
    if (!lease || etcd_put(s->w, key, "1", 1, lease, NULL) < 0)
        log_warn("challenge %s: cannot confirm it in etcd: %s", token, etcd_error(s->w));
}

/* A token's file holds exactly TOKEN.THUMBPRINT: anything else in etcd is not served. */
static void mirror_challenge(sync_state *s, const char *token, const etcd_event *ev)
{
    if (!challenge_token_ok(token))
        return;
    if (ev->deleted) {
        /* our ack may have landed after the ordering host cleared the acks: it goes too */
        char key[512];
        ack_key(s, token, key, sizeof(key));
        challenge_remove(s->o->webroot, token);
        etcd_delete(s->w, key);
        return;
    }
    const char *v = (const char *)ev->kv.value;
    size_t tl = strlen(token), n = ev->kv.value_len;
    if (n > KEY_AUTH_MAX || n <= tl + 1 || strncmp(v, token, tl) != 0 || v[tl] != '.' ||
        strlen(v) != n) {
        log_warn("challenge %s in etcd is not a key authorization; not served", token);
        return;
    }
    if (challenge_write(s->o->webroot, token, v) == 0)
        confirm_token(s, token);
}

static void apply(sync_state *s, const etcd_event *ev)
{
    if (strlen(ev->kv.key) <= s->plen)
        return;
    const char *rel = ev->kv.key + s->plen;
    if (strncmp(rel, "certs/", 6) == 0 && !ev->deleted) {
        bool changed = false;
        cluster_import(s->c, s->o, rel + 6, (const char *)ev->kv.value, ev->kv.value_len, &changed);
        s->reload |= changed;
    } else if (strncmp(rel, "challenges/", 11) == 0) {
        mirror_challenge(s, rel + 11, ev);
    } else if (strncmp(rel, "tickets/", 8) == 0) {
        s->tickets_dirty = true;
    }
}

/* A change the edge must see ends the watch, so that it reloads now rather than at the end of
 * the watch's slice. */
static int on_event(void *arg, const etcd_event *ev)
{
    sync_state *s = arg;
    apply(s, ev);
    return s->reload || s->tickets_dirty;
}

/* Everything under the prefix, as if each key had just been written. */
static int read_all(sync_state *s, int64_t *rev)
{
    etcd_range r;
    if (etcd_get_prefix(s->e, s->c->cfg->prefix, &r) < 0)
        return -1;
    for (size_t i = 0; i < r.count; i++) {
        etcd_event ev = {.deleted = false, .kv = r.kvs[i]};
        apply(s, &ev);
    }
    *rev = r.revision + 1;
    s->tickets_dirty = true;
    etcd_range_free(&r);
    return 0;
}

/* ---- session-ticket secrets, one per period, made by whichever host comes first ---- */

static void ensure_ticket(sync_state *s, long long period)
{
    char key[512];
    snprintf(key, sizeof(key), "%stickets/%lld", s->c->cfg->prefix, period);
    etcd_kv kv;
    int found = etcd_get(s->e, key, &kv);
    if (found == 0)
        etcd_kv_free(&kv);
    if (found != ETCD_NOT_FOUND) /* there already, or etcd away */
        return;
    unsigned char secret[TICKET_SECRET_LEN];
    int64_t lease = 0;
    char *sealed = RAND_bytes(secret, sizeof(secret)) == 1
                       ? seal_text(cluster_seal_key(s->c), key, secret, sizeof(secret))
                       : NULL;
    OPENSSL_cleanse(secret, sizeof(secret));
    /* kept for three periods: the current one, the one before (tickets still in use), spare */
    if (sealed && etcd_lease_grant(s->e, 3 * TICKET_PERIOD_S, &lease) == 0) {
        etcd_compare cmp = {key, ETCD_CMP_CREATE_REVISION, 0};
        etcd_op op = {.key = key, .value = sealed, .len = strlen(sealed), .lease = lease};
        bool applied = false;
        if (etcd_txn(s->e, &cmp, 1, &op, 1, &applied, NULL) < 0 || !applied)
            etcd_lease_revoke(s->e, lease);
    }
    free(sealed);
}

static json_t *ticket_entry(sync_state *s, const etcd_kv *kv)
{
    const char *tail = strrchr(kv->key, '/');
    char *end;
    long long period = tail ? strtoll(tail + 1, &end, 10) : 0;
    if (!tail || *end || period <= 0)
        return NULL;
    size_t len = 0;
    unsigned char *secret =
        seal_open(cluster_seal_key(s->c), kv->key, (const char *)kv->value, &len);
    json_t *entry = NULL;
    if (secret && len == TICKET_SECRET_LEN) {
        char b64[64];
        EVP_EncodeBlock((unsigned char *)b64, secret, (int)len);
        entry = json_pack("{s:I, s:s}", "period", (json_int_t)period, "secret", b64);
        OPENSSL_cleanse(b64, sizeof(b64));
    }
    if (secret)
        OPENSSL_cleanse(secret, len);
    free(secret);
    return entry;
}

/* STATE_DIR/cluster/ticket-keys.json (0600) from tickets/, written when it changed. */
static int write_ticket_file(sync_state *s, bool *changed)
{
    char prefix[512], path[1024];
    snprintf(prefix, sizeof(prefix), "%stickets/", s->c->cfg->prefix);
    etcd_range r;
    if (etcd_get_prefix(s->e, prefix, &r) < 0)
        return -1;
    json_t *keys = json_array();
    for (size_t i = 0; i < r.count; i++) {
        json_t *entry = ticket_entry(s, &r.kvs[i]);
        if (entry)
            json_array_append_new(keys, entry);
    }
    etcd_range_free(&r);
    json_t *doc = json_pack("{s:i, s:o}", "period_s", TICKET_PERIOD_S, "keys", keys);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    snprintf(path, sizeof(path), "%s/ticket-keys.json", s->c->state_dir);
    size_t old_len = 0;
    char *old = store_read_file(path, 1 << 16, &old_len);
    int rc = text ? 0 : -1;
    if (text && (!old || strcmp(old, text) != 0)) {
        rc = store_mkdirs(s->c->state_dir, 0700) == 0
                 ? store_write_file(s->c->state_dir, "ticket-keys.json", text, strlen(text), 0600)
                 : -1;
        *changed = rc == 0;
    }
    if (old)
        OPENSSL_cleanse(old, old_len);
    if (text)
        OPENSSL_cleanse(text, strlen(text));
    free(old);
    free(text);
    return rc;
}

static void tend_tickets(sync_state *s)
{
    long long period = (long long)(time(NULL) / TICKET_PERIOD_S);
    ensure_ticket(s, period);
    ensure_ticket(s, period + 1); /* ready before the period turns, on every host alike */
    bool changed = false;
    if (write_ticket_file(s, &changed) == 0)
        s->tickets_dirty = false;
    if (changed) {
        log_info("cluster: session-ticket keys updated");
        s->reload = true;
    }
}

static void note_reachable(sync_state *s, bool up)
{
    if (up && s->down)
        log_info("cluster: etcd reachable again; reading what changed meanwhile");
    else if (!up && !s->down)
        log_warn("cluster: etcd out of reach (%s); serving the local copies, retrying",
                 etcd_error(s->e));
    s->down = !up;
}

static void pause_ms(cluster *c, int64_t ms)
{
    for (int64_t waited = 0; waited < ms && !c->sync_stop; waited += 100) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *sync_main(void *arg)
{
    cluster *c = arg;
    sync_state s = {.c = c, .o = c->opts, .plen = strlen(c->cfg->prefix), .e = cluster_client(c)};
    int64_t rev = 0, next_tickets = 0;
    bool fresh = true;
    if (s.e && !(s.w = cluster_client(c))) {
        etcd_close(s.e);
        s.e = NULL;
    }
    if (s.e) {
        lease_current(c, s.e);
        lease_register(c, s.e);
    }
    while (s.e && !c->sync_stop) {
        if (fresh && read_all(&s, &rev) < 0) {
            note_reachable(&s, false);
            pause_ms(c, RETRY_MS);
            continue;
        }
        note_reachable(&s, true);
        fresh = false;
        if (s.tickets_dirty || wait_now_ms() >= next_tickets) {
            tend_tickets(&s);
            next_tickets = wait_now_ms() + TICKET_CHECK_MS;
        }
        if (s.reload && reload_after_change(s.o) < 0)
            log_warn("cluster: the edge could not be told to reload");
        s.reload = false;
        int rc = etcd_watch_prefix(s.e, c->cfg->prefix, rev, WATCH_SLICE_MS, on_event, &s,
                                   &c->sync_stop, &rev);
        if (rc == ETCD_COMPACTED || rc == ETCD_ERR)
            fresh = true;
        if (rc == ETCD_ERR && !c->sync_stop)
            pause_ms(c, RETRY_MS);
    }
    if (s.reload)
        reload_after_change(s.o);
    etcd_close(s.e);
    etcd_close(s.w);
    return NULL;
}

int cluster_sync_start(cluster *c, const certd_opts *o)
{
    c->opts = o;
    c->sync_stop = false;
    c->sync_started = pthread_create(&c->sync_thread, NULL, sync_main, c) == 0;
    if (!c->sync_started)
        log_error("cluster: cannot start the sync thread");
    return c->sync_started ? 0 : -1;
}

void cluster_sync_stop(cluster *c)
{
    if (!c->sync_started)
        return;
    c->sync_stop = true;
    pthread_join(c->sync_thread, NULL);
    c->sync_started = false;
}
