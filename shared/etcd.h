/* A small client of etcd v3's JSON gateway (/v3/kv/..., /v3/lease/..., /v3/watch) over libcurl:
 * what hearth's hosts share through etcd (docs/cluster.md) needs ranges, puts, transactions,
 * leases and watches, and nothing else. Blocking calls, each bounded by the client's timeout;
 * one client per thread. Keys are C strings; values are bytes (the gateway's base64 is this
 * file's business). Several endpoints: a call that cannot reach one tries the next, starting
 * with the one that answered last. A read that got no answer in time goes to the next one too;
 * a write that went out and got none is not sent again (the member may have applied it): it
 * fails, and the next call starts with the next endpoint. So a call takes at most timeout_ms
 * per endpoint. A member cut off from its cluster's leader refuses at once ("no leader"; calls
 * ask etcd for that), so a lost quorum fails calls fast instead of at their timeout.
 * TLS: etcd 3.4's gateway refuses a client certificate that has a Common Name (HTTP 400), so
 * hearth's client certificate for etcd carries subject alternative names only. */
#ifndef HEARTH_ETCD_H
#define HEARTH_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/strlist.h"

typedef struct etcd_client etcd_client;

typedef struct {
    strlist endpoints; /* "http://10.0.0.1:2379", "https://etcd.example:2379" */
    const char *ca;    /* PEM bundle etcd's certificate is checked against; NULL: system's */
    const char *cert;  /* client certificate and key for etcd's TLS; NULL: none */
    const char *key;
    const char *username; /* etcd auth; NULL: none */
    const char *password;
    int64_t timeout_ms; /* each call at each endpoint (a watch: its own bound); 0: 5 s */
} etcd_options;

/* Results: 0 success, ETCD_NOT_FOUND (get), ETCD_COMPACTED (watch: start revision gone),
 * ETCD_ERR: no endpoint answered or etcd refused (message in etcd_error()). */
enum { ETCD_ERR = -1, ETCD_NOT_FOUND = 1, ETCD_COMPACTED = 2 };

typedef struct {
    char *key;
    unsigned char *value; /* NUL-terminated beyond value_len */
    size_t value_len;
    int64_t create_revision; /* 0: the key does not exist */
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} etcd_kv;

typedef struct {
    etcd_kv *kvs;
    size_t count;
    int64_t revision; /* the store's revision the answer was read at */
} etcd_range;

/* NULL (message in err) when the options are unusable; no connection is made here. */
etcd_client *etcd_open(const etcd_options *o, char *err, size_t errlen);
void etcd_close(etcd_client *c);
/* The last failure, for a log line ("etcd at URL: why"); kept until the next failure. */
const char *etcd_error(const etcd_client *c);

/* One key: 0 with *out filled (value never NULL, "" when empty), ETCD_NOT_FOUND (*out zeroed),
 * ETCD_ERR. */
int etcd_get(etcd_client *c, const char *key, etcd_kv *out);
/* Every key starting with prefix, sorted by key ("": every key). 0 with none: count 0. */
int etcd_get_prefix(etcd_client *c, const char *prefix, etcd_range *out);
/* lease 0: none (a lease that is gone: ETCD_ERR). *revision (may be NULL) gets the revision
 * of the write. */
int etcd_put(etcd_client *c, const char *key, const void *value, size_t len, int64_t lease,
             int64_t *revision);
/* 0 also when there was nothing to delete. */
int etcd_delete(etcd_client *c, const char *key);
int etcd_delete_prefix(etcd_client *c, const char *prefix);
void etcd_kv_free(etcd_kv *kv);
void etcd_range_free(etcd_range *r);

/* A transaction: when every comparison holds, the operations are applied together, else
 * nothing is. Comparisons are equalities on a key's create or mod revision (0: the key does
 * not exist); that is what locks and fencing need. */
typedef enum { ETCD_CMP_CREATE_REVISION, ETCD_CMP_MOD_REVISION } etcd_cmp_target;
typedef struct {
    const char *key;
    etcd_cmp_target target;
    int64_t revision;
} etcd_compare;
typedef struct {
    const char *key;
    const void *value; /* NULL with delete */
    size_t len;
    int64_t lease;
    bool delete_; /* delete the key (value unused) */
} etcd_op;
/* 0 with *applied telling whether the comparisons held; *revision (may be NULL) the store's
 * revision after the transaction. No comparison: always applied. An operation etcd refuses
 * (a put with a lease that is gone) fails the whole call with ETCD_ERR, not *applied false. */
int etcd_txn(etcd_client *c, const etcd_compare *cmp, size_t ncmp, const etcd_op *ops, size_t nops,
             bool *applied, int64_t *revision);

/* Leases: a key written with a lease goes when the lease expires or is revoked. */
int etcd_lease_grant(etcd_client *c, int64_t ttl_s, int64_t *id);
/* 0 with *ttl_left > 0 while the lease lives; ETCD_NOT_FOUND once it expired. */
int etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t *ttl_left);
/* ETCD_NOT_FOUND when the lease is gone already (expired or revoked). */
int etcd_lease_revoke(etcd_client *c, int64_t id);

/* Changes to keys under prefix from revision start_rev on, each given to on_event as it
 * arrives, until timeout_ms passes, on_event returns nonzero, or *stop becomes true (looked at
 * at least every 200 ms; may be NULL). *next_rev gets the revision to resume from. 0 when it
 * ended for one of those reasons, ETCD_COMPACTED when start_rev is gone (read the prefix again
 * and watch from that read's revision + 1; *next_rev is then the compacted revision, the
 * oldest still kept), ETCD_ERR when the stream broke or never started (*next_rev still says
 * where to resume). start_rev 0: from now on; *next_rev is then the revision after "now" once
 * etcd has started the watch. *next_rev is the last event's mod_revision + 1, so an on_event
 * that returns nonzero in the middle of one transaction's events skips the rest of them. The
 * event and its kv are only valid during on_event. */
typedef struct {
    bool deleted; /* kv.key was deleted (kv.value empty) */
    etcd_kv kv;
} etcd_event;
typedef int (*etcd_watch_fn)(void *arg, const etcd_event *ev);
int etcd_watch_prefix(etcd_client *c, const char *prefix, int64_t start_rev, int64_t timeout_ms,
                      etcd_watch_fn on_event, void *arg, volatile bool *stop, int64_t *next_rev);

/* One line per endpoint, appended to lines, for `hearth check --online`:
 * "http://10.0.0.1:2379: etcd 3.4.23, leader 8e9e05c52164694d, raft term 2" or why it cannot
 * be reached ("no leader" when it answered without one). 0 when at least one endpoint answered
 * with a leader and, with auth configured, accepted the credentials (checked at each endpoint:
 * ", logged in as USER" ends its line), else ETCD_ERR. */
int etcd_status(etcd_client *c, strlist *lines);

#endif
