/* Rate and connection limits per client address. One table of clients, in memory shared by
 * every worker (made before they fork, like nginx's limit_req_zone), so a rate is the rate
 * whatever the number of workers. An entry is a client and a rule: a site's limit under a
 * prefix (a leaky bucket, nginx's limit_req with nodelay), or its open connections (limit_conn).
 * The table has a fixed number of entries: when it is full, a clock sweep evicts first an
 * entry whose bucket has drained (it knows nothing a new one would not), else one not used
 * since the hand last passed; an entry counting open connections is never evicted. An evicted
 * client starts over with a full burst. A process-shared robust mutex guards the table: a
 * worker killed while holding it leaves it usable. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/percent.h"
#include "edge/req.h"

#define CONN_RULE 0 /* the rule of connection counts; a limit's id is never 0 */
#define NONE (-1)
/* Links (bucket heads, chains, the free list) hold an entry's index + 1; 0 is the end. */

typedef struct {
    ip_addr addr;   /* the client; an IPv6 one by its /64, the usual size of one subscriber */
    uint32_t rule;  /* CONN_RULE, or an edge_limit's id */
    uint32_t next;  /* in its bucket's chain, or in the free list */
    uint32_t rate;  /* the rule's when last used: how fast excess drains */
    uint32_t conns; /* open connections, all workers together (CONN_RULE) */
    int64_t excess; /* milli-requests above the rate, nginx's "excess" */
    uint64_t last_ms;
    uint8_t used, referenced;
} entry;

typedef struct {
    pthread_mutex_t lock;
    uint64_t seed; /* keys the hash, so that no one can aim addresses at one bucket */
    uint32_t size, mask, hand, unused, workers;
    uint32_t free;
} table_head;

/* The region: the head, then the buckets' chains, the entries, and for
 * each worker slot how many connections it holds on each entry (given back when it dies). */
static table_head *t;
static uint32_t *buckets;
static entry *entries;
static uint16_t *held_all;
static int slot;
static log_repeat evict_log, conn_log;

static uint16_t *held(int worker)
{
    return held_all + (size_t)worker * t->size;
}

int edge_limits_open(int workers, int table_size)
{
    uint32_t nb = 1;
    while (nb < (uint32_t)table_size)
        nb <<= 1;
    size_t size = sizeof(table_head) + nb * sizeof(uint32_t) + (size_t)table_size * sizeof(entry) +
                  (size_t)workers * (size_t)table_size * sizeof(uint16_t);
    /* Anonymous and shared: zero pages cost nothing until a client touches them. */
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        log_error("limits: cannot map %zu bytes for client_table_size %d: %s", size, table_size,
                  strerror(errno));
        return -1;
    }
    t = m;
    buckets = (uint32_t *)(t + 1);
    entries = (entry *)(buckets + nb);
    held_all = (uint16_t *)(entries + table_size);
    *t = (table_head){.size = (uint32_t)table_size, .mask = nb - 1, .workers = (uint32_t)workers};
    if (getrandom(&t->seed, sizeof(t->seed), 0) != sizeof(t->seed))
        t->seed = (uint64_t)(uintptr_t)m ^ (uint64_t)getpid();
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&t->lock, &a);
    pthread_mutexattr_destroy(&a);
    return 0;
}

static void lock(void)
{
    /* The holder died mid-update: at worst one entry is lost from its chain (found again by
     * the sweep), so the table goes on. */
    if (pthread_mutex_lock(&t->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&t->lock);
}

static void unlock(void)
{
    pthread_mutex_unlock(&t->lock);
}

void edge_limits_set_worker(int s)
{
    slot = s;
}

void edge_limits_worker_gone(int s)
{
    if (!t || s < 0 || (uint32_t)s >= t->workers)
        return;
    lock();
    uint16_t *h = held(s);
    for (uint32_t i = 0; i < t->unused; i++) {
        if (!h[i])
            continue;
        entries[i].conns -= h[i] < entries[i].conns ? h[i] : entries[i].conns;
        h[i] = 0;
    }
    unlock();
}

/* ---- the table ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    return x ^ (x >> 33);
}

static uint32_t bucket_of(const ip_addr *a, uint32_t rule)
{
    uint64_t w0, w1;
    memcpy(&w0, a->b, 8);
    memcpy(&w1, a->b + 8, 8);
    return (uint32_t)(mix(mix(t->seed ^ rule ^ w0) ^ w1) >> 32) & t->mask;
}

static int32_t find(const ip_addr *a, uint32_t rule)
{
    for (uint32_t n = buckets[bucket_of(a, rule)]; n; n = entries[n - 1].next)
        if (entries[n - 1].rule == rule && memcmp(&entries[n - 1].addr, a, sizeof(*a)) == 0)
            return (int32_t)n - 1;
    return NONE;
}

/* Out of its chain (a chain a dead worker left half-linked may not hold it: then nothing). */
static void unlink_entry(int32_t i)
{
    uint32_t *link = &buckets[bucket_of(&entries[i].addr, entries[i].rule)];
    while (*link && *link != (uint32_t)i + 1)
        link = &entries[*link - 1].next;
    if (*link)
        *link = entries[i].next;
    entries[i].used = 0;
}

/* How far the bucket has drained by now: excess left, never below 0. */
static int64_t excess_now(const entry *e, uint64_t now)
{
    uint64_t elapsed = now > e->last_ms ? now - e->last_ms : 0;
    if (elapsed > UINT64_C(1000000000))
        elapsed = UINT64_C(1000000000); /* far past any burst; keeps the product in range */
    int64_t left = e->excess - (int64_t)(e->rate * elapsed / 1000);
    return left > 0 ? left : 0;
}

static bool forgettable(const entry *e, uint64_t now)
{
    return e->rule == CONN_RULE ? e->conns == 0 : excess_now(e, now) == 0;
}

/* How far ahead of the clock's hand a drained entry is looked for before one that still
 * holds state is given up. */
#define EVICT_LOOKAHEAD 64

/* The clock, preferring what costs nothing to forget: the first drained entry within the
 * look-ahead, else the first one that still holds state but was not used since the hand last
 * passed (the hand clears the marks it passes). Two turns at most; connection counts are never
 * evicted. */
static int32_t evict(uint64_t now)
{
    int32_t unused = NONE;
    for (uint64_t step = 0; step < 2 * (uint64_t)t->size + 1; step++) {
        if (unused != NONE && step >= EVICT_LOOKAHEAD)
            break;
        int32_t i = (int32_t)t->hand;
        t->hand = (t->hand + 1) % t->size;
        entry *e = &entries[i];
        if (!e->used || (e->rule == CONN_RULE && e->conns > 0))
            continue;
        if (forgettable(e, now)) {
            unlink_entry(i);
            return i;
        }
        if (e->referenced)
            e->referenced = 0;
        else if (unused == NONE)
            unused = i;
    }
    if (unused != NONE) {
        log_repeated(&evict_log, now, HLOG_WARN,
                     "limits: the client table (client_table_size %u) is full of clients over "
                     "their rate; evicted ones start over with a full burst",
                     t->size);
        unlink_entry(unused);
    }
    return unused;
}

static int32_t take_free(uint64_t now)
{
    if (t->free) {
        int32_t i = (int32_t)t->free - 1;
        t->free = entries[i].next;
        return i;
    }
    if (t->unused < t->size)
        return (int32_t)t->unused++;
    return evict(now);
}

/* The entry of a client and rule, made when missing; NONE when every entry holds
 * connections. */
static int32_t lookup(const ip_addr *a, uint32_t rule, uint64_t now, bool *made)
{
    int32_t i = find(a, rule);
    *made = i == NONE;
    if (i == NONE && (i = take_free(now)) != NONE) {
        uint32_t *head = &buckets[bucket_of(a, rule)];
        entries[i] = (entry){.addr = *a, .rule = rule, .next = *head, .used = 1, .last_ms = now};
        *head = (uint32_t)i + 1;
    }
    if (i != NONE)
        entries[i].referenced = 1;
    return i;
}

/* An IPv6 client is known by its /64. */
static ip_addr key_of(const ip_addr *a)
{
    ip_addr k = *a;
    if (!ip_is_v4(&k))
        memset(k.b + 8, 0, 8);
    return k;
}

/* ---- connections ---- */

int32_t edge_limits_conn_open(const edge_gen *g, const struct sockaddr *sa)
{
    int max = edge_w.cfg.edge.max_connections_per_client;
    ip_addr a;
    /* A trusted proxy carries many clients on its connections: it is not one of them. */
    if (!t || max == 0 || ip_from_sockaddr(sa, &a) < 0 || edge_client_trusted(g, &a))
        return NONE;
    ip_addr k = key_of(&a);
    bool made;
    lock();
    int32_t i = lookup(&k, CONN_RULE, edge_now_ms(), &made);
    if (i != NONE && entries[i].conns >= (uint32_t)max) {
        unlock();
        char text[48];
        ip_format(&a, text, sizeof(text));
        log_repeated(&conn_log, edge_now_ms(), HLOG_WARN,
                     "%s: closed a connection past max_connections_per_client (%d)", text, max);
        edge_metrics_limited_conn();
        return EDGE_CONN_REFUSED;
    }
    if (i != NONE) {
        entries[i].conns++;
        held(slot)[i]++;
    }
    unlock();
    return i; /* NONE: every entry holds connections, the table is too small; not counted */
}

void edge_limits_conn_closed(int32_t i)
{
    if (!t || i < 0)
        return;
    lock();
    entry *e = &entries[i];
    if (held(slot)[i] > 0) {
        held(slot)[i]--;
        e->conns -= e->conns > 0;
        if (e->used && e->rule == CONN_RULE && e->conns == 0) { /* nothing left to know */
            unlink_entry(i);
            e->next = t->free;
            t->free = (uint32_t)i + 1;
        }
    }
    unlock();
}

/* ---- requests ---- */

/* FNV-1a of the site's name and the prefix: the same rule after a reload keeps its clients. */
static uint32_t rule_id(const char *site, const char *prefix)
{
    uint32_t h = 2166136261u;
    for (const char *s = site; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ 0) * 16777619u;
    for (const char *s = prefix; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h == CONN_RULE ? 1 : h;
}

int edge_limits_build_site(edge_site *s, const config_site *cs, char *err, size_t errlen)
{
    s->limits = calloc(cs->limit_count + 1, sizeof(edge_limit));
    if (!s->limits) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cs->limit_count; i++) {
        const config_limit *c = &cs->limits[i];
        edge_limit *l = &s->limits[i];
        s->limit_count = i + 1;
        l->prefix = strdup(c->prefix);
        l->prefix_len = strlen(c->prefix);
        l->burst = (uint32_t)c->burst;
        l->id = rule_id(s->name, c->prefix);
        if (!l->prefix || config_parse_rate(c->rate, &l->rate) < 0) {
            snprintf(err, errlen, "site '%s': limit rate '%s'", s->name, c->rate);
            return -1;
        }
    }
    return 0;
}

void edge_limits_free_site(edge_site *s)
{
    for (size_t i = 0; i < s->limit_count; i++)
        free(s->limits[i].prefix);
    free(s->limits);
}

/* The path as the application will see it, for matching prefixes: percent-escapes decoded,
 * empty and "." segments dropped, ".." resolved, so that /%61pi/ and /x/../api/ are limited as
 * /api/ is. out has room for len + 2 bytes; the path is rewritten in place after decoding. */
static size_t clean_path(const char *p, size_t len, char *out)
{
    size_t d = 0;
    for (size_t i = 0; i < len && p[i] != '?' && p[i] != '#';) {
        int esc = p[i] == '%' ? percent_escape(p + i, len - i) : -1;
        out[d++] = esc >= 0 ? (char)esc : p[i];
        i += esc >= 0 ? 3 : 1;
    }
    size_t w = 0, i = 0;
    bool dir = true; /* the path ends in a directory: "/", "/.", "/.." */
    while (i < d) {
        while (i < d && out[i] == '/')
            i++;
        size_t start = i;
        while (i < d && out[i] != '/')
            i++;
        size_t seg = i - start;
        dir = seg == 0 || (seg <= 2 && memcmp(out + start, "..", seg) == 0) || i < d;
        if (seg == 0 || (seg == 1 && out[start] == '.'))
            continue;
        if (seg == 2 && out[start] == '.' && out[start + 1] == '.') {
            while (w > 0 && out[w - 1] != '/')
                w--;
            w -= w > 0;
            continue;
        }
        out[w++] = '/'; /* w stays behind start: a '/' was skipped for each one written */
        memmove(out + w, out + start, seg);
        w += seg;
    }
    if (dir || w == 0)
        out[w++] = '/';
    return w;
}

/* The path part of the target: origin-form as it is, absolute-form after its authority. */
static const char *target_path(const char *t, size_t len, size_t *plen)
{
    if (len && t[0] != '/') {
        const char *scheme = memmem(t, len, "://", 3);
        const char *slash = scheme ? memchr(scheme + 3, '/', len - (size_t)(scheme + 3 - t)) : NULL;
        if (!slash) {
            *plen = 0;
            return t;
        }
        len -= (size_t)(slash - t);
        t = slash;
    }
    *plen = len;
    return t;
}

/* The most specific prefix wins, as nginx's locations do: /api/ traffic is counted by /api/'s
 * limit and not also by /'s. "/api" alone counts as "/api/". */
static const edge_limit *match(const edge_site *s, const char *path, size_t len)
{
    const edge_limit *best = NULL;
    for (size_t i = 0; i < s->limit_count; i++) {
        const edge_limit *l = &s->limits[i];
        bool under = (len >= l->prefix_len && memcmp(path, l->prefix, l->prefix_len) == 0) ||
                     (len + 1 == l->prefix_len && memcmp(path, l->prefix, len) == 0);
        if (under && (!best || l->prefix_len > best->prefix_len))
            best = l;
    }
    return best;
}

static const edge_limit *limit_for(const edge_req *r)
{
    static char *path;
    static size_t cap;
    size_t tlen;
    const char *target = target_path(r->head + r->target.off, r->target.len, &tlen);
    if (tlen + 2 > cap) {
        char *grown = realloc(path, tlen + 2);
        if (!grown)
            return NULL;
        path = grown;
        cap = tlen + 2;
    }
    size_t n = clean_path(target, tlen, path);
    return match(r->site, path, n);
}

/* nginx's leaky bucket: each request adds 1000 to excess, which drains at the rate; past the
 * burst the request is refused and changes nothing. The answer: 0 allowed, else the
 * milliseconds until one more would be. */
static uint64_t take_token(const edge_limit *l, const ip_addr *client, uint64_t now)
{
    ip_addr k = key_of(client);
    bool made;
    uint64_t wait = 0;
    lock();
    int32_t i = lookup(&k, l->id, now, &made);
    if (i != NONE && !made) {
        entry *e = &entries[i];
        e->rate = l->rate;
        int64_t excess = excess_now(e, now) + 1000;
        int64_t over = excess - (int64_t)l->burst * 1000;
        if (over > 0) {
            wait = ((uint64_t)over * 1000 + l->rate - 1) / l->rate;
        } else {
            e->excess = excess;
            e->last_ms = now;
        }
    } else if (i != NONE) {
        entries[i].rate = l->rate; /* a first request leaves the bucket empty, as in nginx */
    }
    unlock();
    return wait;
}

bool edge_limits_request(edge_req *r)
{
    if (!t || !r->site || r->site->limit_count == 0 || !r->client_known)
        return false;
    const edge_limit *l = limit_for(r);
    if (!l)
        return false;
    uint64_t wait = take_token(l, &r->client_addr, edge_now_ms());
    if (wait == 0)
        return false;
    log_debug("%s: 429, over the rate of %s%s", edge_req_client(r), r->site->name, l->prefix);
    edge_metrics_limited_request(r);
    edge_resp_start(r, 429);
    edge_resp_headerf(r, "Retry-After", "%llu", (unsigned long long)((wait + 999) / 1000));
    edge_resp_body(r, "text/plain; charset=utf-8", "too many requests\n");
    return true;
}
