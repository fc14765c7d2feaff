/* Checks the etcd client (shared/etcd.h) against a real etcd: tests/e2e/test_etcd_client.py
 * starts etcd in each set-up (plain, TLS with auth, a dead first endpoint, a server that never
 * answers, one whose answers are all broken) and runs this with the scenarios that fit it.
 *
 *   etcd_check SCENARIO[,SCENARIO...] [ENDPOINT...]
 *
 * Endpoints from the arguments, else ETCD_CHECK_ENDPOINTS (comma-separated). The client's
 * options from ETCD_CHECK_CA, _CERT, _KEY, _USER, _PASSWORD, _TIMEOUT_MS; ETCD_CHECK_REV is
 * the compacted revision of the "compacted" scenario. Every key written is under
 * /etcd-check/PID/. Prints each failure with its line and etcd_error(), then a summary; exits
 * 1 on any failure. */
#include "shared/etcd.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check.h"

#define OK(c, call) CHECK_MSG((call) == 0, "%s", etcd_error(c))

static etcd_options options;
static char prefix[64];

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

/* PREFIX + rest, in a static buffer of a few (each call's result lives for 8 more calls). */
static const char *key(const char *rest)
{
    static char keys[8][128];
    static unsigned next;
    char *k = keys[next++ % 8];
    snprintf(k, sizeof(keys[0]), "%s%s", prefix, rest);
    return k;
}

static etcd_client *open_client(void)
{
    char err[256];
    etcd_client *c = etcd_open(&options, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "etcd_open: %s\n", err);
        exit(1);
    }
    return c;
}

static int put_str(etcd_client *c, const char *k, const char *v, int64_t *rev)
{
    return etcd_put(c, k, v, strlen(v), 0, rev);
}

/* ---- what the watch saw ---- */

typedef struct {
    char seen[16][160]; /* "PUT key=value" or "DELETE key" */
    int64_t revs[16];
    int count;
    int stop_after; /* on_event returns 1 after this many; 0: never */
} events;

static int collect(void *arg, const etcd_event *ev)
{
    events *e = arg;
    if (e->count < 16) {
        if (ev->deleted)
            snprintf(e->seen[e->count], sizeof(e->seen[0]), "DELETE %s", ev->kv.key);
        else
            snprintf(e->seen[e->count], sizeof(e->seen[0]), "PUT %s=%.*s", ev->kv.key,
                     (int)ev->kv.value_len, (const char *)ev->kv.value);
        e->revs[e->count] = ev->kv.mod_revision;
    }
    e->count++;
    return e->stop_after && e->count >= e->stop_after;
}

static void check_seen(const events *e, int i, const char *kind, const char *rest,
                       const char *value)
{
    char want[160];
    if (value)
        snprintf(want, sizeof(want), "%s %s=%s", kind, key(rest), value);
    else
        snprintf(want, sizeof(want), "%s %s", kind, key(rest));
    CHECK_MSG(i < e->count && strcmp(e->seen[i], want) == 0, "event %d: \"%s\", not \"%s\"", i,
              i < e->count ? e->seen[i] : "(none)", want);
}

/* ---- scenario kv: every call on a reachable etcd ---- */

static void check_open_refusals(void)
{
    char err[256];
    etcd_options o = {0};
    CHECK(etcd_open(&o, err, sizeof(err)) == NULL && strstr(err, "endpoint"));
    strlist_add(&o.endpoints, "ftp://127.0.0.1:2379");
    CHECK(etcd_open(&o, err, sizeof(err)) == NULL && strstr(err, "URL"));
    strlist_clear(&o.endpoints);
    strlist_add(&o.endpoints, "http://127.0.0.1:2379");
    o.cert = "/nonexistent.pem";
    CHECK(etcd_open(&o, err, sizeof(err)) == NULL && strstr(err, "go together"));
    o.key = "/nonexistent.pem";
    CHECK(etcd_open(&o, err, sizeof(err)) == NULL && strstr(err, "cannot be read"));
    strlist_clear(&o.endpoints);
}

static void check_get_put(etcd_client *c)
{
    etcd_kv kv;
    int64_t rev = 0, rev2 = 0;
    CHECK_MSG(etcd_get(c, key("a"), &kv) == ETCD_NOT_FOUND, "%s", etcd_error(c));
    CHECK(kv.key == NULL && kv.value == NULL && kv.create_revision == 0);
    OK(c, put_str(c, key("a"), "1", &rev));
    CHECK(rev > 0);
    OK(c, etcd_get(c, key("a"), &kv));
    CHECK_STR(kv.key ? kv.key : "", key("a"));
    CHECK(kv.value_len == 1 && kv.value && strcmp((char *)kv.value, "1") == 0);
    CHECK(kv.create_revision == rev && kv.mod_revision == rev && kv.version == 1 && kv.lease == 0);
    etcd_kv_free(&kv);
    OK(c, put_str(c, key("a"), "one", &rev2));
    OK(c, etcd_get(c, key("a"), &kv));
    CHECK(kv.create_revision == rev && kv.mod_revision == rev2 && rev2 > rev && kv.version == 2);
    etcd_kv_free(&kv);
    /* values are bytes: NULs and 0xff come back as they went, and NUL-terminated beyond */
    const unsigned char bin[] = {0, 0xff, 'x', 0, 0xfe};
    OK(c, etcd_put(c, key("bin"), bin, sizeof(bin), 0, NULL));
    OK(c, etcd_get(c, key("bin"), &kv));
    CHECK(kv.value_len == sizeof(bin) && memcmp(kv.value, bin, sizeof(bin)) == 0 &&
          kv.value[sizeof(bin)] == 0);
    etcd_kv_free(&kv);
    OK(c, etcd_put(c, key("empty"), "", 0, 0, NULL));
    OK(c, etcd_get(c, key("empty"), &kv));
    CHECK(kv.value_len == 0 && kv.value && kv.value[0] == 0);
    etcd_kv_free(&kv);
}

static void check_prefix_delete(etcd_client *c)
{
    etcd_range r;
    etcd_kv kv;
    int64_t last;
    OK(c, put_str(c, key("p/b"), "B", NULL));
    OK(c, put_str(c, key("p/a"), "A", NULL));
    OK(c, put_str(c, key("p/c/d"), "CD", NULL));
    OK(c, put_str(c, key("p0"), "outside", &last)); /* shares the text, not the prefix */
    OK(c, etcd_get_prefix(c, key("p/"), &r));
    CHECK_MSG(r.count == 3, "%zu keys", r.count);
    if (r.count == 3) {
        CHECK_STR(r.kvs[0].key, key("p/a"));
        CHECK_STR(r.kvs[1].key, key("p/b"));
        CHECK_STR(r.kvs[2].key, key("p/c/d"));
        CHECK(strcmp((char *)r.kvs[2].value, "CD") == 0);
    }
    CHECK(r.revision >= last);
    etcd_range_free(&r);
    OK(c, etcd_delete(c, key("p/b")));
    CHECK(etcd_get(c, key("p/b"), &kv) == ETCD_NOT_FOUND);
    OK(c, etcd_delete(c, key("p/b"))); /* nothing to delete is no failure */
    OK(c, etcd_delete_prefix(c, key("p/")));
    OK(c, etcd_get_prefix(c, key("p/"), &r));
    CHECK(r.count == 0 && r.kvs == NULL);
    etcd_range_free(&r);
    OK(c, etcd_get(c, key("p0"), &kv));
    etcd_kv_free(&kv);
}

/* A lock as certd takes it, then a fenced write: applied while the comparisons hold, and
 * nothing of it applied once one of them does not. */
static void check_txn(etcd_client *c)
{
    bool applied = false;
    int64_t lock_rev = 0, data_rev = 0, rev = 0;
    etcd_compare free_lock = {key("lock"), ETCD_CMP_CREATE_REVISION, 0};
    etcd_op take = {.key = key("lock"), .value = "me", .len = 2};
    OK(c, etcd_txn(c, &free_lock, 1, &take, 1, &applied, &lock_rev));
    CHECK(applied && lock_rev > 0);
    OK(c, etcd_txn(c, &free_lock, 1, &take, 1, &applied, &rev));
    CHECK(!applied && rev == lock_rev);
    OK(c, put_str(c, key("data"), "old", &data_rev));
    OK(c, put_str(c, key("gone"), "x", NULL));
    etcd_compare fence[] = {{key("lock"), ETCD_CMP_CREATE_REVISION, lock_rev},
                            {key("data"), ETCD_CMP_MOD_REVISION, data_rev}};
    etcd_op write[] = {{.key = key("data"), .value = "new", .len = 3},
                       {.key = key("gone"), .delete_ = true}};
    OK(c, etcd_txn(c, fence, 2, write, 2, &applied, &rev));
    CHECK(applied && rev > data_rev);
    OK(c, put_str(c, key("gone"), "back", NULL));
    OK(c, etcd_txn(c, fence, 2, write, 2, &applied, NULL)); /* data moved on: stale fence */
    CHECK(!applied);
    etcd_kv kv;
    OK(c, etcd_get(c, key("data"), &kv));
    CHECK(kv.value && strcmp((char *)kv.value, "new") == 0 && kv.mod_revision == rev);
    etcd_kv_free(&kv);
    OK(c, etcd_get(c, key("gone"), &kv)); /* the failed transaction deleted nothing */
    etcd_kv_free(&kv);
}

static void check_leases(etcd_client *c)
{
    int64_t id = 0, ttl = 0;
    etcd_kv kv;
    OK(c, etcd_lease_grant(c, 30, &id));
    CHECK(id != 0);
    OK(c, etcd_put(c, key("leased"), "v", 1, id, NULL));
    OK(c, etcd_get(c, key("leased"), &kv));
    CHECK(kv.lease == id);
    etcd_kv_free(&kv);
    OK(c, etcd_lease_keepalive(c, id, &ttl));
    CHECK_MSG(ttl > 0 && ttl <= 30, "ttl %" PRId64, ttl);
    etcd_op op = {.key = key("leased2"), .value = "w", .len = 1, .lease = id};
    bool applied;
    OK(c, etcd_txn(c, NULL, 0, &op, 1, &applied, NULL));
    CHECK(applied);
    OK(c, etcd_lease_revoke(c, id));
    CHECK(etcd_get(c, key("leased"), &kv) == ETCD_NOT_FOUND); /* revoking deletes its keys */
    CHECK(etcd_get(c, key("leased2"), &kv) == ETCD_NOT_FOUND);
    CHECK(etcd_lease_keepalive(c, id, &ttl) == ETCD_NOT_FOUND && ttl == 0);
    CHECK_MSG(etcd_lease_revoke(c, id) == ETCD_NOT_FOUND, "%s", etcd_error(c));
    /* a write with a lease that is gone is refused, with etcd's reason */
    CHECK(etcd_put(c, key("x"), "v", 1, id, NULL) == ETCD_ERR);
    CHECK_MSG(strstr(etcd_error(c), "lease not found"), "%s", etcd_error(c));
}

/* The history of a prefix: puts and deletes in order, from a start revision, each once. */
static void check_watch_history(etcd_client *c)
{
    int64_t first, last, next = 0;
    OK(c, put_str(c, key("w/1"), "x", &first));
    OK(c, put_str(c, key("w/2"), "y", NULL));
    OK(c, put_str(c, key("w0"), "not under w/", NULL));
    OK(c, etcd_delete(c, key("w/1")));
    OK(c, put_str(c, key("w/2"), "z", &last));
    /* the history, to its last event (the bound only stops a broken watch) */
    events e = {.stop_after = 4};
    OK(c, etcd_watch_prefix(c, key("w/"), first, 20000, collect, &e, NULL, &next));
    CHECK_MSG(e.count == 4, "%d events", e.count);
    check_seen(&e, 0, "PUT", "w/1", "x");
    check_seen(&e, 1, "PUT", "w/2", "y");
    check_seen(&e, 2, "DELETE", "w/1", NULL);
    check_seen(&e, 3, "PUT", "w/2", "z");
    CHECK(next == last + 1);
    /* the caller ends it after two: at once, resuming after the second */
    events two = {.stop_after = 2};
    int64_t t0 = now_ms();
    OK(c, etcd_watch_prefix(c, key("w/"), first, 20000, collect, &two, NULL, &next));
    /* ended by the callback, not by its bound */
    CHECK(two.count == 2 && next == two.revs[1] + 1 && now_ms() - t0 < 10000);
    /* nothing new: ends at its timeout (never before it) with the same resume point */
    events none = {0};
    int64_t t1 = now_ms();
    OK(c, etcd_watch_prefix(c, key("w/"), last + 1, 300, collect, &none, NULL, &next));
    int64_t took = now_ms() - t1;
    CHECK_MSG(took >= 250 && took < 10000, "a 300 ms watch took %" PRId64 " ms", took);
    CHECK(none.count == 0 && next == last + 1);
    /* from now (0): the resume point is where now was */
    OK(c, etcd_watch_prefix(c, key("w/"), 0, 200, collect, &none, NULL, &next));
    CHECK_MSG(none.count == 0 && next == last + 1, "next %" PRId64 ", last %" PRId64, next, last);
}

static void check_status(etcd_client *c, const char *expect)
{
    strlist lines = {0};
    int rc = etcd_status(c, &lines);
    CHECK_MSG(expect ? rc == 0 : rc == ETCD_ERR, "etcd_status gave %d", rc);
    CHECK(lines.count == options.endpoints.count);
    for (size_t i = 0; i < lines.count; i++)
        printf("status: %s\n", lines.items[i]);
    bool found = false;
    for (size_t i = 0; expect && i < lines.count; i++)
        found |= strstr(lines.items[i], expect) != NULL;
    CHECK_MSG(!expect || found, "no status line has \"%s\"", expect);
    strlist_clear(&lines);
}

static void scenario_kv(void)
{
    etcd_client *c = open_client();
    check_open_refusals();
    check_get_put(c);
    check_prefix_delete(c);
    check_txn(c);
    check_leases(c);
    check_watch_history(c);
    check_status(c, ", raft term ");
    OK(c, etcd_delete_prefix(c, prefix));
    etcd_close(c);
}

/* ---- scenario quick: a few calls (the failover set-up) ---- */

static void scenario_quick(void)
{
    etcd_client *c = open_client();
    etcd_kv kv;
    int64_t rev, next;
    events e = {0};
    for (int i = 0; i < 3; i++) { /* the dead endpoint is skipped every time */
        OK(c, put_str(c, key("q"), "v", &rev));
        OK(c, etcd_get(c, key("q"), &kv));
        etcd_kv_free(&kv);
    }
    e.stop_after = 1;
    OK(c, etcd_watch_prefix(c, key("q"), rev, 10000, collect, &e, NULL, &next));
    CHECK(e.count == 1 && next == rev + 1);
    check_status(c, ", raft term ");
    OK(c, etcd_delete_prefix(c, prefix));
    etcd_close(c);
}

/* ---- scenario live: events as they happen, and the stop flag ---- */

typedef struct {
    int64_t delay_ms;
    volatile bool *stop; /* set after delay_ms; NULL: write instead */
} helper_job;

static void *helper(void *arg)
{
    helper_job *job = arg;
    sleep_ms(job->delay_ms);
    if (job->stop) {
        *job->stop = true;
        return NULL;
    }
    etcd_client *c = open_client(); /* one client per thread */
    OK(c, put_str(c, key("live/1"), "a", NULL));
    OK(c, put_str(c, key("live/2"), "b", NULL));
    OK(c, etcd_delete(c, key("live/1")));
    etcd_close(c);
    return NULL;
}

static void scenario_live(void)
{
    etcd_client *c = open_client();
    etcd_range r;
    int64_t next = 0;
    OK(c, etcd_get_prefix(c, key("live/"), &r));
    int64_t from = r.revision + 1;
    etcd_range_free(&r);
    pthread_t t;
    helper_job writer = {200, NULL};
    pthread_create(&t, NULL, helper, &writer);
    events e = {.stop_after = 3}; /* the watch ends with the writer's third change */
    int64_t t0 = now_ms();
    OK(c, etcd_watch_prefix(c, key("live/"), from, 10000, collect, &e, NULL, &next));
    int64_t took = now_ms() - t0;
    CHECK_MSG(took >= 190 && took < 5000, "ended after %" PRId64 " ms", took);
    pthread_join(t, NULL);
    CHECK_MSG(e.count == 3, "%d events", e.count);
    check_seen(&e, 0, "PUT", "live/1", "a");
    check_seen(&e, 1, "PUT", "live/2", "b");
    check_seen(&e, 2, "DELETE", "live/1", NULL);
    CHECK(e.count == 3 && next == e.revs[2] + 1);
    /* stop: looked at often, whatever the timeout */
    volatile bool stop = false;
    helper_job stopper = {300, &stop};
    pthread_create(&t, NULL, helper, &stopper);
    t0 = now_ms();
    OK(c, etcd_watch_prefix(c, key("live/"), next, 10000, collect, &e, &stop, &next));
    took = now_ms() - t0;
    /* by the flag, long before the 10 s bound */
    CHECK_MSG(took >= 290 && took < 5000, "stopped after %" PRId64 " ms", took);
    pthread_join(t, NULL);
    OK(c, etcd_watch_prefix(c, key("live/"), next, 10000, collect, &e, &stop, &next));
    OK(c, etcd_delete_prefix(c, prefix));
    etcd_close(c);
}

/* ---- scenario expiry: a lease nobody keeps alive takes its key with it ---- */

/* Under auth with a short token TTL (test_etcd_client's), both clients' tokens lapse during
 * the silent wait: the watcher logs in again inside the watch, the other in a call. */
static void scenario_expiry(void)
{
    etcd_client *c = open_client(), *watcher = open_client();
    int64_t id, ttl, rev, next;
    etcd_kv kv;
    CHECK(etcd_get(watcher, key("expiring"), &kv) == ETCD_NOT_FOUND); /* logged in now */
    OK(c, etcd_lease_grant(c, 1, &id));
    OK(c, etcd_put(c, key("expiring"), "v", 1, id, &rev));
    OK(c, etcd_lease_keepalive(c, id, &ttl));
    sleep_ms(ttl * 1000 + 300 > 2200 ? ttl * 1000 + 300 : 2200);
    /* ends at the event (the bound is only for a broken watch: a loaded machine may take
     * well over 200 ms to log in again and deliver it) */
    events e = {.stop_after = 1};
    OK(watcher, etcd_watch_prefix(watcher, key("expiring"), rev, 10000, collect, &e, NULL, &next));
    check_seen(&e, 0, "PUT", "expiring", "v");
    int rc = 0;
    for (int64_t t0 = now_ms(); now_ms() - t0 < 3000; sleep_ms(100)) {
        if ((rc = etcd_get(c, key("expiring"), &kv)) != 0)
            break;
        etcd_kv_free(&kv);
    }
    CHECK_MSG(rc == ETCD_NOT_FOUND, "the key is still there (%d): %s", rc, etcd_error(c));
    CHECK(etcd_lease_keepalive(c, id, &ttl) == ETCD_NOT_FOUND);
    etcd_close(watcher);
    etcd_close(c);
}

/* ---- scenario refused: wrong credentials ---- */

static void scenario_refused(void)
{
    etcd_client *c = open_client();
    etcd_kv kv;
    int64_t next;
    CHECK(etcd_get(c, key("a"), &kv) == ETCD_ERR);
    CHECK_MSG(strstr(etcd_error(c), "credentials"), "%s", etcd_error(c));
    events e = {0};
    CHECK(etcd_watch_prefix(c, key(""), 0, 500, collect, &e, NULL, &next) == ETCD_ERR);
    check_status(c, NULL);
    etcd_close(c);
}

/* ---- scenario compacted: a watch from a revision etcd no longer has ---- */

static void scenario_compacted(void)
{
    const char *rev = getenv("ETCD_CHECK_REV");
    int64_t start = rev ? strtoll(rev, NULL, 10) : 1, next = 0;
    etcd_client *c = open_client();
    events e = {0};
    int rc = etcd_watch_prefix(c, "/", start, 2000, collect, &e, NULL, &next);
    CHECK_MSG(rc == ETCD_COMPACTED, "%d: %s", rc, etcd_error(c));
    CHECK_MSG(next > start, "next %" PRId64, next);
    etcd_close(c);
}

/* ---- scenario unanswered: a server that accepts and never answers ---- */

static void check_bounded(const char *what, int rc, int64_t t0)
{
    int64_t took = now_ms() - t0, bound = options.timeout_ms;
    printf("%s: %d after %" PRId64 " ms\n", what, rc, took);
    CHECK_MSG(rc == ETCD_ERR, "%s gave %d", what, rc);
    CHECK_MSG(took >= bound - 50 && took < bound + 700, "%s took %" PRId64 " ms", what, took);
}

static void scenario_unanswered(void)
{
    etcd_client *c = open_client();
    etcd_kv kv;
    int64_t t0 = now_ms(), next, id;
    check_bounded("get", etcd_get(c, "k", &kv), t0);
    printf("error: %s\n", etcd_error(c));
    t0 = now_ms();
    check_bounded("put", etcd_put(c, "k", "v", 1, 0, NULL), t0);
    t0 = now_ms();
    check_bounded("lease", etcd_lease_grant(c, 5, &id), t0);
    t0 = now_ms();
    events e = {0};
    int rc = etcd_watch_prefix(c, "k", 0, options.timeout_ms, collect, &e, NULL, &next);
    check_bounded("watch", rc, t0);
    printf("error: %s\n", etcd_error(c));
    check_status(c, NULL);
    etcd_close(c);
}

/* ---- scenario malformed: a server whose every answer is broken for every call ---- */

static void check_refused(etcd_client *c, const char *what, int rc)
{
    printf("%s: %d: %s\n", what, rc, etcd_error(c));
    CHECK_MSG(rc == ETCD_ERR, "%s gave %d", what, rc);
}

static void scenario_malformed(void)
{
    etcd_client *c = open_client();
    etcd_kv kv;
    etcd_range r;
    int64_t rev, next;
    bool applied;
    events e = {0};
    etcd_op op = {.key = "k", .value = "v", .len = 1};
    check_refused(c, "get", etcd_get(c, "k", &kv));
    CHECK(kv.key == NULL && kv.value == NULL);
    check_refused(c, "get_prefix", etcd_get_prefix(c, "k", &r));
    CHECK(r.count == 0 && r.kvs == NULL);
    check_refused(c, "put", etcd_put(c, "k", "v", 1, 0, &rev));
    check_refused(c, "delete", etcd_delete(c, "k"));
    check_refused(c, "txn", etcd_txn(c, NULL, 0, &op, 1, &applied, &rev));
    check_refused(c, "grant", etcd_lease_grant(c, 5, &rev));
    check_refused(c, "keepalive", etcd_lease_keepalive(c, 1, &rev));
    check_refused(c, "watch", etcd_watch_prefix(c, "k", 1, 1000, collect, &e, NULL, &next));
    CHECK(next == 1);
    check_status(c, NULL);
    etcd_close(c);
}

/* ---- scenario oversized: answers larger than the client takes ---- */

static void scenario_oversized(void)
{
    etcd_client *c = open_client();
    etcd_kv kv;
    int64_t next;
    events e = {0};
    check_refused(c, "get", etcd_get(c, "k", &kv));
    check_refused(c, "watch", etcd_watch_prefix(c, "k", 1, 1000, collect, &e, NULL, &next));
    etcd_close(c);
}

/* ---- scenario leaderless: a member cut off from the leader refuses at once ---- */

static void check_no_leader(etcd_client *c, const char *what, int rc, int64_t t0)
{
    int64_t took = now_ms() - t0;
    printf("%s: %d after %" PRId64 " ms: %s\n", what, rc, took, etcd_error(c));
    CHECK_MSG(rc == ETCD_ERR && strstr(etcd_error(c), "no leader"), "%s gave %d: %s", what, rc,
              etcd_error(c));
    CHECK_MSG(took < options.timeout_ms / 2, "%s took %" PRId64 " ms", what, took);
}

static void scenario_leaderless(void)
{
    etcd_client *c = open_client();
    etcd_kv kv;
    int64_t t0 = now_ms(), rev, id;
    events e = {0};
    check_no_leader(c, "get", etcd_get(c, key("k"), &kv), t0);
    t0 = now_ms();
    check_no_leader(c, "put", etcd_put(c, key("k"), "v", 1, 0, &rev), t0);
    t0 = now_ms();
    check_no_leader(c, "lease", etcd_lease_grant(c, 5, &id), t0);
    t0 = now_ms();
    check_no_leader(c, "watch", etcd_watch_prefix(c, key(""), 0, 3000, collect, &e, NULL, &rev),
                    t0);
    check_status(c, NULL);
    etcd_close(c);
}

/* ---- main ---- */

static void load_options(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        strlist_add(&options.endpoints, argv[i]);
    char *list = getenv("ETCD_CHECK_ENDPOINTS") ? strdup(getenv("ETCD_CHECK_ENDPOINTS")) : NULL;
    for (char *save, *e = list ? strtok_r(list, ",", &save) : NULL; e && argc <= 2;
         e = strtok_r(NULL, ",", &save))
        strlist_add(&options.endpoints, e);
    free(list);
    options.ca = getenv("ETCD_CHECK_CA");
    options.cert = getenv("ETCD_CHECK_CERT");
    options.key = getenv("ETCD_CHECK_KEY");
    options.username = getenv("ETCD_CHECK_USER");
    options.password = getenv("ETCD_CHECK_PASSWORD");
    const char *t = getenv("ETCD_CHECK_TIMEOUT_MS");
    options.timeout_ms = t ? strtoll(t, NULL, 10) : 2000;
    snprintf(prefix, sizeof(prefix), "/etcd-check/%d/", (int)getpid());
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*run)(void);
    } scenarios[] = {{"kv", scenario_kv},
                     {"quick", scenario_quick},
                     {"live", scenario_live},
                     {"expiry", scenario_expiry},
                     {"refused", scenario_refused},
                     {"compacted", scenario_compacted},
                     {"unanswered", scenario_unanswered},
                     {"malformed", scenario_malformed},
                     {"oversized", scenario_oversized},
                     {"leaderless", scenario_leaderless}};
    if (argc < 2) {
        fprintf(stderr, "usage: etcd_check SCENARIO[,SCENARIO...] [ENDPOINT...]\n");
        return 2;
    }
    load_options(argc, argv);
    char *names = strdup(argv[1]);
    for (char *save, *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        size_t i = 0, count = sizeof(scenarios) / sizeof(scenarios[0]);
        while (i < count && strcmp(scenarios[i].name, n) != 0)
            i++;
        if (i == count) {
            fprintf(stderr, "etcd_check: no scenario %s\n", n);
            return 2;
        }
        int failed = check_failed;
        scenarios[i].run();
        printf("%s: %s\n", n, check_failed == failed ? "ok" : "FAILED");
    }
    free(names);
    strlist_clear(&options.endpoints);
    return check_summary("etcd_check");
}
