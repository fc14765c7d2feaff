/* This host's etcd lease: certificate locks and challenge tokens are written with it, and the
 * daemon's hosts/HOST key too, so all of them go when the host dies (its lease expires after
 * lock_ttl). A thread with its own etcd client renews it every third of the TTL; a lease that
 * expired anyway (etcd away for longer than the TTL) is replaced, and what was written with it
 * is gone: the fencing of cluster_publish refuses a certificate ordered under a lost lock. */
#include "certd/cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"

static int64_t ttl_s(const cluster *c)
{
    int64_t s = (c->cfg->lock_ttl_ms + 999) / 1000;
    return s < 2 ? 2 : s;
}

static void register_host(cluster *c, etcd_client *e, int64_t lease)
{
    char key[512], value[64];
    snprintf(key, sizeof(key), "%shosts/%s", c->cfg->prefix, c->host);
    int n = snprintf(value, sizeof(value), "{\"since\":%lld}", (long long)time(NULL));
    if (etcd_put(e, key, value, (size_t)n, lease, NULL) < 0)
        log_warn("cluster: registering host %s: %s", c->host, etcd_error(e));
    else
        log_debug("cluster: host %s registered with lease %llx", c->host,
                  (unsigned long long)lease);
}

/* Keep the lease alive, or get a new one; under c->mu. */
static void renew(cluster *c, etcd_client *e)
{
    int64_t old = c->lease, left = 0, fresh = 0;
    bool was_registered = c->registered;
    pthread_mutex_unlock(&c->mu);
    int rc = old ? etcd_lease_keepalive(e, old, &left) : ETCD_NOT_FOUND;
    /* A keepalive is safe to repeat: one that found no answer (a member gone) goes at once to
     * the next endpoint rather than a third of the TTL later, when the lease may be gone. */
    if (rc == ETCD_ERR)
        rc = etcd_lease_keepalive(e, old, &left);
    if (rc == ETCD_NOT_FOUND && etcd_lease_grant(e, ttl_s(c), &fresh) == 0) {
        if (old)
            log_warn("cluster: lease %llx expired (etcd out of reach for longer than lock_ttl); "
                     "locks held under it are lost",
                     (unsigned long long)old);
    } else if (rc != 0) {
        log_debug("cluster: lease keepalive: %s", etcd_error(e));
    }
    pthread_mutex_lock(&c->mu);
    if (fresh && c->lease != old) { /* the main thread got one meanwhile: keep that one */
        pthread_mutex_unlock(&c->mu);
        etcd_lease_revoke(e, fresh);
        pthread_mutex_lock(&c->mu);
        return;
    }
    if (fresh)
        c->lease = fresh;
    if (fresh && was_registered) {
        pthread_mutex_unlock(&c->mu);
        register_host(c, e, fresh);
        pthread_mutex_lock(&c->mu);
    }
}

static void *lease_main(void *arg)
{
    cluster *c = arg;
    etcd_client *e = cluster_client(c);
    pthread_mutex_lock(&c->mu);
    while (e && !c->stopping) {
        renew(c, e);
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        int64_t ns = at.tv_nsec + ttl_s(c) * 1000000000LL / 3;
        at.tv_sec += ns / 1000000000LL;
        at.tv_nsec = ns % 1000000000LL;
        while (!c->stopping && pthread_cond_timedwait(&c->cv, &c->mu, &at) != ETIMEDOUT)
            ;
    }
    int64_t lease = c->keep_lease ? 0 : c->lease;
    pthread_mutex_unlock(&c->mu);
    /* stopping: what the lease holds (locks, hosts/HOST, tokens) goes now, not after the TTL;
     * unless certd re-executes itself, whose next self takes the lease over */
    if (e && lease)
        etcd_lease_revoke(e, lease);
    etcd_close(e);
    return NULL;
}

int64_t lease_current(cluster *c, etcd_client *e)
{
    pthread_mutex_lock(&c->mu);
    if (!c->lease_thread_started && !c->stopping) {
        c->lease_thread_started = pthread_create(&c->lease_thread, NULL, lease_main, c) == 0;
        if (!c->lease_thread_started)
            log_error("cluster: cannot start the lease thread");
    }
    if (!c->lease) { /* the thread has not got one yet: get it here, it keeps it alive */
        int64_t id = 0;
        pthread_mutex_unlock(&c->mu);
        int rc = etcd_lease_grant(e, ttl_s(c), &id);
        pthread_mutex_lock(&c->mu);
        if (rc == 0 && !c->lease)
            c->lease = id;
        else if (rc == 0)
            etcd_lease_revoke(e, id);
    }
    int64_t lease = c->lease;
    pthread_mutex_unlock(&c->mu);
    return lease;
}

void lease_register(cluster *c, etcd_client *e)
{
    pthread_mutex_lock(&c->mu);
    c->registered = true;
    int64_t lease = c->lease;
    pthread_mutex_unlock(&c->mu);
    if (lease)
        register_host(c, e, lease);
}

void lease_stop(cluster *c)
{
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->cv);
    bool started = c->lease_thread_started;
    pthread_mutex_unlock(&c->mu);
    if (started)
        pthread_join(c->lease_thread, NULL);
}

void cluster_hand_over(cluster *c)
{
    pthread_mutex_lock(&c->mu);
    c->keep_lease = true;
    int64_t lease = c->lease;
    pthread_mutex_unlock(&c->mu);
    cluster_close(c); /* the threads are gone before the environment changes */
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)lease);
    if (lease)
        setenv(LEASE_ENV, id, 1);
}

void lease_take_over(cluster *c)
{
    const char *id = getenv(LEASE_ENV);
    char *end;
    long long lease = id ? strtoll(id, &end, 10) : 0;
    if (id && *end == '\0' && lease > 0)
        c->lease = lease; /* renewed by the lease thread, or replaced if it expired meanwhile */
    unsetenv(LEASE_ENV);
}
