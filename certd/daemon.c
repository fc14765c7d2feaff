/* certd --daemon: renew what is due, reload after a real change, back failures off with jitter;
 * SIGHUP checks at once (and re-reads -c FILE), SIGTERM/SIGINT stop. */
#include "certd/cluster.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/backoff.h"
#include "shared/log.h"
#include "shared/sdnotify.h"

#define DAEMON_MAX_CERTS 256
#define DAEMON_MIN_SLEEP_MS 1000

typedef struct {
    char name[256];
    int failures;
    int64_t next_try_ms; /* monotonic; 0: any time */
    bool deferred;       /* due by lifetime, but the CA's ARI window says later */
} retry_state;

typedef struct {
    retry_state items[DAEMON_MAX_CERTS];
    size_t count;
} retry_table;

static retry_state *retry_for(retry_table *t, const char *name)
{
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->items[i].name, name) == 0)
            return &t->items[i];
    if (t->count == DAEMON_MAX_CERTS)
        return NULL;
    retry_state *s = &t->items[t->count++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    return s;
}

static void note_result(const certd_opts *o, retry_state *s, int rc)
{
    if (!s)
        return;
    if (rc == CLUSTER_BUSY) {
        /* not a failure: another host is ordering (its result arrives through etcd), or etcd
         * is away; either way, look again once a dead holder's lock would have expired */
        s->next_try_ms = wait_now_ms() + o->cluster->cfg->lock_ttl_ms;
        return;
    }
    certd_metrics_attempt(s->name, rc);
    if (rc == EXIT_OK || rc == EXIT_NOTHING) {
        time_t when;
        s->failures = 0;
        s->next_try_ms = 0;
        s->deferred = rc == EXIT_NOTHING && ops_renew_time(o, NULL, s->name, &when) == 0 &&
                      when <= time(NULL);
        return;
    }
    int64_t d = backoff_jitter_ms(
        backoff_delay_ms(o->backoff_min_ms, o->backoff_max_ms, (unsigned)s->failures),
        wait_random());
    s->failures++;
    s->next_try_ms = wait_now_ms() + d;
    log_warn("%s: attempt %d failed; next try in %.1f s; the current certificate stays", s->name,
             s->failures, (double)d / 1000);
}

static bool meta_has(json_t *domains, const char *name)
{
    size_t i;
    json_t *d;
    json_array_foreach(domains, i, d)
    {
        if (json_is_string(d) && strcasecmp(json_string_value(d), name) == 0)
            return true;
    }
    return false;
}

/* A stored certificate already is what the config asks for: same names, same issuer kind.
 * Otherwise (a new site, an added alias, acme <-> internal) it has to be issued now. */
static bool stored_as_wanted(const certd_opts *o, const certd_names *n)
{
    char *chain = NULL;
    size_t len = 0;
    json_t *meta = NULL;
    if (store_load(o->cert_dir, n->names[0], &chain, &len, NULL, NULL, &meta) < 0)
        return false;
    free(chain);
    json_t *domains = json_object_get(meta, "domains");
    const char *server = certd_json_str(meta, "server");
    bool same = json_array_size(domains) == n->count &&
                (server && strcmp(server, "internal") == 0) == n->internal;
    for (size_t i = 0; same && i < n->count; i++)
        same = meta_has(domains, n->names[i]);
    json_decref(meta);
    return same;
}

/* One pass over the wanted and the stored certificates. */
static bool check_all(const certd_opts *o, retry_table *t)
{
    bool changed = false;
    int64_t now = wait_now_ms();
    for (size_t i = 0; i < o->wanted_count && !wait_stop_requested(); i++) {
        const certd_names *n = &o->wanted[i];
        retry_state *s = retry_for(t, n->names[0]);
        if (stored_as_wanted(o, n) || (s && s->next_try_ms > now))
            continue;
        note_result(o, s, ops_issue(o, n, false, &changed));
    }
    char **names;
    size_t count;
    if (store_list(o->cert_dir, &names, &count) < 0)
        return changed;
    for (size_t i = 0; i < count && !wait_stop_requested(); i++) {
        retry_state *s = retry_for(t, names[i]);
        if (s && s->next_try_ms > now)
            continue;
        certd_opts one = *o;
        one.wanted = NULL;
        bool c = false;
        int rc = ops_renew_one(&one, names[i], false, &c);
        note_result(o, s, rc);
        changed |= c;
    }
    store_free_list(names, count);
    return changed;
}

/* Until the next check: the interval, an earlier renewal time, or an earlier retry. */
static int64_t next_sleep_ms(const certd_opts *o, retry_table *t)
{
    int64_t sleep = schedule_jitter_ms(o->check_interval_ms, wait_random());
    int64_t now = wait_now_ms();
    for (size_t i = 0; i < t->count; i++)
        if (t->items[i].next_try_ms > now && t->items[i].next_try_ms - now < sleep)
            sleep = t->items[i].next_try_ms - now;
    char **names;
    size_t count;
    if (store_list(o->cert_dir, &names, &count) == 0) {
        for (size_t i = 0; i < count; i++) {
            time_t when;
            retry_state *s = retry_for(t, names[i]);
            if (s && (s->failures || s->deferred))
                continue; /* its backoff, or the regular check, decides */
            if (ops_renew_time(o, NULL, names[i], &when) == 0) {
                int64_t d = ((int64_t)when - (int64_t)time(NULL)) * 1000;
                if (d < sleep)
                    sleep = d;
            }
        }
        store_free_list(names, count);
    }
    return sleep < DAEMON_MIN_SLEEP_MS ? DAEMON_MIN_SLEEP_MS : sleep;
}

int daemon_run(const certd_opts *o)
{
    retry_table *t = calloc(1, sizeof(*t));
    if (!t)
        return EXIT_FAIL;
    log_info("daemon: cert dir %s, checking every %.0f s, renewing with less than %.0f%% of "
             "the lifetime left",
             o->cert_dir, (double)o->check_interval_ms / 1000, o->renew_fraction * 100);
    certd_metrics_open();
    if (o->cluster && cluster_sync_start(o->cluster, o) < 0) {
        free(t);
        return EXIT_FAIL;
    }
    sd_notify_send("READY=1");
    while (!wait_stop_requested()) {
        if (check_all(o, t) && reload_after_change(o) < 0)
            log_warn("the certificate changed but the reload failed");
        certd_metrics_certs(o);
        int64_t ms = next_sleep_ms(o, t);
        /* a SIGHUP that came during the pass (an order sleeps through it) is answered now */
        int sig = wait_take_hup() ? SIGHUP : 0;
        if (!sig) {
            log_debug("daemon: next check in %lld ms", (long long)ms);
            sig = wait_ms(ms);
            wait_take_hup();
        }
        if (sig == SIGHUP && o->reexec_on_hup) {
            log_info("SIGHUP: reloading the config");
            free(t);
            return CERTD_EXIT_REEXEC;
        }
        if (sig == SIGHUP)
            log_info("SIGHUP: checking now");
    }
    sd_notify_send("STOPPING=1");
    log_info("daemon: stopping");
    free(t);
    return EXIT_OK;
}
