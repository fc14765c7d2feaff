/* certd's private declarations, one section per source file, as OpenBSD acme-client keeps
 * one header of shared declarations. Nothing outside certd/ includes this. */
#ifndef HEARTH_CERTD_H
#define HEARTH_CERTD_H

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "shared/buf.h"
#include "shared/config.h"
#include "shared/exit_codes.h"

/* Exit codes are shared/exit_codes.h's: certbot-like scripts need to tell "issued" (EXIT_OK)
 * from "nothing to do" (EXIT_NOTHING). This one never leaves the process: the daemon wants to
 * start over with the new config. */
enum { CERTD_EXIT_REEXEC = 100 };

#define CERTD_LE_PRODUCTION "https://acme-v02.api.letsencrypt.org/directory"
#define CERTD_LE_STAGING "https://acme-staging-v02.api.letsencrypt.org/directory"
#define CERTD_MAX_NAMES 100 /* Let's Encrypt's limit of names per certificate */

/* One certificate to obtain: its names (the first one names the directory). */
typedef struct {
    char **names;
    size_t count;
    bool internal; /* signed by the local CA (tls: internal), not obtained by ACME */
} certd_names;

/* Everything the commands need, from flags or from the config file. */
typedef struct {
    char *server;
    char *ca_bundle;
    char *email;
    bool agree_tos;
    char *eab_kid;
    char *eab_hmac_key;
    config_key_type key_type;
    char *cert_dir;
    char *webroot;
    char *account_dir;
    char *internal_ca_dir;
    bool dry_run;
    bool force;
    int revoke_reason;
    certd_names *wanted; /* certificates the daemon keeps (from -d or the config's sites) */
    size_t wanted_count;
    int64_t check_interval_ms;
    double renew_fraction;
    int64_t backoff_min_ms;
    int64_t backoff_max_ms;
    int64_t timeout_ms; /* one issuance, polling included, must finish within this */
    char *reload_pidfile;
    char *deploy_hook;
    bool reexec_on_hup;      /* -c given: SIGHUP re-reads the file by re-executing certd */
    struct cluster *cluster; /* several hosts through etcd; NULL: local files only */
    const struct cluster_lock *locked; /* the certificate lock an issuance holds (cluster) */
} certd_opts;

/* ---- wait.c: signals are blocked and only looked at here, so no wait is uninterruptible ---- */
void wait_setup(void);
/* Sleep ms milliseconds; 0 when the time passed, else the signal that ended the sleep
 * (SIGTERM/SIGINT also set the stop flag). */
int wait_ms(int64_t ms);
bool wait_stop_requested(void);
/* A SIGHUP arrived since the last call. */
bool wait_take_hup(void);
/* Sleep ms milliseconds in the middle of work: a SIGHUP is noted for afterwards (the daemon
 * reloads once the work is done) rather than cutting the work short. 0 when the time passed,
 * -1 when a stop was requested. */
int wait_through_hup(int64_t ms);
const sigset_t *wait_sigset(void);
int64_t wait_now_ms(void); /* CLOCK_MONOTONIC */
uint32_t wait_random(void);

/* ---- fetch.c: one libcurl handle, HTTPS only, CA verified, every transfer time-bounded ---- */
typedef struct {
    CURL *curl;
    struct curl_slist *headers;
    char *ca_bundle;
    long connect_timeout_s;
    long timeout_s;
    size_t max_body;
    char errbuf[CURL_ERROR_SIZE];
} fetch_client;

typedef struct {
    long status;
    buf body; /* NUL-terminated beyond buf_used() */
    char *location;
    char *nonce;
    char *retry_after;
    char *content_type;
} fetch_response;

int fetch_client_init(fetch_client *c, const char *ca_bundle);
void fetch_client_free(fetch_client *c);
/* method "GET", "HEAD" or "POST"; ctype/body for POST. -1 on transport failure (logged). */
int fetch_request(fetch_client *c, const char *method, const char *url, const char *ctype,
                  const char *body, fetch_response *resp);
void fetch_response_free(fetch_response *resp);

/* ---- jws.c: base64url, JWK, RFC 7638 thumbprints, flattened JWS (ES256/ES384, HS256) ---- */
char *b64url_encode(const unsigned char *data, size_t len);
int b64url_decode(const char *text, size_t len, unsigned char **out, size_t *outlen);
json_t *jws_jwk(EVP_PKEY *key);
char *jws_thumbprint(EVP_PKEY *key);
const char *jws_alg(EVP_PKEY *key); /* NULL: not a key we sign with */
/* Flattened JWS (a new reference): protected {alg, nonce (when given), url, kid or else jwk}.
 * payload NULL means the empty payload of POST-as-GET. */
json_t *jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                 const char *payload);
/* External account binding: HS256 over the account's JWK. */
json_t *jws_eab(const char *eab_kid, const char *hmac_key_b64url, EVP_PKEY *account_key,
                const char *url);
/* 0 when jws (flattened JSON) carries a valid signature by key; *payload gets the decoded
 * payload when not NULL. */
int jws_verify(EVP_PKEY *key, const char *jws, char **payload);
/* ECDSA signature conversions between DER (OpenSSL) and the raw r||s of JWS (RFC 7518 3.4). */
unsigned char *jws_sig_der_to_raw(const unsigned char *der, size_t derlen, size_t half,
                                  size_t *rawlen);
unsigned char *jws_sig_raw_to_der(const unsigned char *raw, size_t rawlen, size_t *derlen);

/* ---- keys.c: key generation and PEM files ---- */
int key_type_parse(const char *name, config_key_type *type);
const char *key_type_name(config_key_type type);
int key_type_of(EVP_PKEY *key, config_key_type *type);
EVP_PKEY *key_generate(config_key_type type);
char *key_to_pem(EVP_PKEY *key, size_t *len);
EVP_PKEY *key_from_pem(const char *pem, size_t len);

/* ---- csr.c ---- */
/* DER PKCS#10 request for names signed by key; NULL on error. */
unsigned char *csr_build(EVP_PKEY *key, const certd_names *names, size_t *derlen);

/* ---- certinfo.c: what a stored or downloaded chain says about itself ---- */
typedef struct {
    time_t not_before;
    time_t not_after;
    char serial[130]; /* lowercase hex, as Pebble's /cert-status-by-serial/ wants */
    char **names;     /* subjectAltName dNSNames */
    size_t name_count;
    char *ari_id; /* RFC 9773 certID, NULL without an authority key identifier */
    config_key_type key_type;
    bool key_type_known;
} cert_info;

/* Parse the leaf of a PEM chain. -1 with a message in err. */
int certinfo_parse(const char *pem, size_t len, cert_info *info, char *err, size_t errlen);
void certinfo_free(cert_info *info);
/* The chain is usable for names with key: parses, leaf key is key, SANs cover names. */
int certinfo_check(const char *pem, size_t len, EVP_PKEY *key, const certd_names *names, char *err,
                   size_t errlen);
/* DER of the leaf certificate (for revocation). */
unsigned char *certinfo_leaf_der(const char *pem, size_t len, size_t *derlen);
/* RFC 9773 certID from the leaf: base64url(AKI keyIdentifier) "." base64url(serial). */
char *certinfo_ari_id(X509 *leaf);

/* ---- schedule.c: pure renewal decisions and retry delays ---- */
/* Retry-After: delay-seconds or HTTP-date. -1 when malformed; past dates give 0. */
int schedule_retry_after(const char *value, time_t now, int64_t *delay_s);
/* RFC 3339 timestamp ("2025-01-02T03:04:05Z", fractions and offsets allowed). */
int schedule_parse_rfc3339(const char *text, time_t *out);
/* When a certificate of this lifetime is due: once less than fraction of it is left. */
time_t schedule_renew_at(time_t not_before, time_t not_after, double fraction);
/* A uniformly chosen moment of an ARI window (rnd is 32 random bits). */
time_t schedule_ari_pick(time_t start, time_t end, uint32_t rnd);
/* interval with +-10% jitter, at least 1 ms. */
int64_t schedule_jitter_ms(int64_t interval_ms, uint32_t rnd);

/* ---- store.c: atomic storage; CERT_DIR/NAME is a symlink to .archive/NAME/<version> ---- */
char *store_read_file(const char *path, size_t max, size_t *len);
/* temp file, fsync, rename, fsync of the directory. */
int store_write_file(const char *dir, const char *name, const void *data, size_t len, mode_t mode);
int store_mkdirs(const char *path, mode_t mode);
/* Exclusive lock on the cert dir, waiting up to timeout_ms; returns the fd or -1. */
int store_lock(const char *cert_dir, int64_t timeout_ms);
void store_unlock(int fd);
int store_save(const char *cert_dir, const char *name, const char *chain, size_t chain_len,
               const char *key, size_t key_len, json_t *meta);
/* Current version of a certificate; -1 when there is none. */
int store_load(const char *cert_dir, const char *name, char **chain, size_t *chain_len, char **key,
               size_t *key_len, json_t **meta);
/* Names of the stored certificates, sorted. */
int store_list(const char *cert_dir, char ***names, size_t *count);
void store_free_list(char **names, size_t count);
/* Does name make a safe single path component (a DNS name, possibly "*.")? */
bool store_name_ok(const char *name);

/* ---- acme.c: directory, nonces, signed POSTs with bounded retries ---- */
typedef struct {
    fetch_client http;
    char *dir_url;
    json_t *dir;
    char *nonce;
    EVP_PKEY *key;       /* account key, owned */
    char *kid;           /* account URL once known */
    int64_t deadline_ms; /* wait_now_ms() bound for the current operation */
} acme_ctx;

typedef struct {
    long status;
    json_t *json; /* the body, when it is JSON */
    char *location;
    char *retry_after;
    buf body;
} acme_reply;

int acme_init(acme_ctx *a, const char *dir_url, const char *ca_bundle, int64_t timeout_ms);
void acme_free(acme_ctx *a);
int acme_directory(acme_ctx *a);
/* URL from the directory, NULL when the CA does not offer it. */
const char *acme_dir_url(acme_ctx *a, const char *name);
/* Signed POST of a JSON payload. 0 on 2xx with a reply; -1 otherwise, with the CA's problem
 * document logged. badNonce, 429/503 and 5xx are retried here, boundedly. The payload is
 * stolen (jansson's _new convention), so a call site builds it in the call:
 * acme_post(a, url, json_pack(...), &r); a NULL payload (a pack that failed) is refused, never
 * sent as a POST-as-GET. *r is always initialised: acme_reply_free it whatever the result. */
int acme_post(acme_ctx *a, const char *url, json_t *payload, acme_reply *r);
/* POST-as-GET (RFC 8555 6.3): a signed POST with an empty payload; as acme_post otherwise. */
int acme_post_as_get(acme_ctx *a, const char *url, acme_reply *r);
/* Plain GET (ARI). */
int acme_get(acme_ctx *a, const char *url, acme_reply *r);
void acme_reply_free(acme_reply *r);
/* Move an HTTP response (body, Location, Retry-After) into a reply, parsing a JSON body;
 * -1 (logged) when the body claims to be JSON and is not. */
int acme_reply_take(fetch_response *h, acme_reply *r);
/* Log the CA's problem document (type, detail, subproblems) once. */
void acme_log_problem(const char *url, const acme_reply *r);
/* The delay to honour before polling again: Retry-After when sane, else fallback_ms. */
int64_t acme_retry_delay_ms(const acme_reply *r, int64_t fallback_ms);
/* Sleep until the next poll; -1 when that passes the deadline or a stop was requested. */
int acme_sleep(acme_ctx *a, int64_t ms);
/* String member of a JSON object, NULL when missing or not a string. */
const char *certd_json_str(const json_t *obj, const char *key);

/* ---- account.c ---- */
char *account_dir_for(const certd_opts *o);
EVP_PKEY *account_key_load(const char *dir, bool create);
int account_register(acme_ctx *a, const certd_opts *o, bool only_existing);
int account_rollover(acme_ctx *a, const char *dir);
/* A rollover cut short between the CA's answer and our rename left account.key.next: when the
 * CA knows that key, adopt it (0, account open); else drop it (-1, go on as usual). */
int account_finish_rollover(acme_ctx *a, const certd_opts *o, const char *dir);

/* ---- challenge.c: HTTP-01 files under WEBROOT/.well-known/acme-challenge ---- */
bool challenge_token_ok(const char *token);
int challenge_write(const char *webroot, const char *token, const char *key_auth);
void challenge_remove(const char *webroot, const char *token);
/* Removes the files a run that was killed left behind (only those written with the account
 * whose thumbprint is given); the count removed. Call it holding the store lock, so no run is
 * answering challenges meanwhile. */
int challenge_sweep(const char *webroot, const char *thumb);

/* ---- order.c: one order from newOrder to the downloaded chain ---- */
typedef struct {
    char *chain; /* PEM */
    size_t chain_len;
    EVP_PKEY *key;
} order_result;

int order_run(acme_ctx *a, const certd_opts *o, const certd_names *names, const char *replaces,
              order_result *out);
void order_result_free(order_result *r);

/* ---- internal.c: the local CA for tls: internal ---- */
/* A certificate for names signed by the CA in o->internal_ca_dir (created on first use). */
int internal_issue(const certd_opts *o, const certd_names *names, order_result *out);

/* ---- ops.c: the one-shot commands ---- */
/* 0 issued, EXIT_NOTHING when not due, 1 on failure; *changed when a cert was written. */
int ops_issue(const certd_opts *o, const certd_names *names, bool force, bool *changed);
int ops_renew_all(const certd_opts *o, bool force, bool *changed);
int ops_renew_one(const certd_opts *o, const char *name, bool force, bool *changed);
int ops_list(const certd_opts *o);
int ops_revoke(const certd_opts *o, const char *name);
int ops_rollover(const certd_opts *o);
/* When name's stored certificate should be renewed (ARI window when the CA offers one). */
int ops_renew_time(const certd_opts *o, acme_ctx *a, const char *name, time_t *when);
/* What the stored certificate name says of itself; -1 (logged) when it is missing or unreadable. */
int ops_cert_info(const certd_opts *o, const char *name, cert_info *info);

/* ---- seal.c: secrets in etcd, AES-256-GCM under the cluster's secret_key_file ---- */
#define SEAL_KEY_LEN 32
int seal_key_load(const char *path, unsigned char key[SEAL_KEY_LEN]);
/* "seal1:..." (key NULL: "plain:" and the text, plaintext_secrets); aad: the etcd key. */
char *seal_text(const unsigned char *key, const char *aad, const void *data, size_t len);
/* The data (NUL-terminated, *len bytes) or NULL, logged: altered, another key, or a plain value
 * where this host expects sealed ones. */
unsigned char *seal_open(const unsigned char *key, const char *aad, const char *text, size_t *len);

/* ---- cluster.c: several hosts sharing certificates through etcd (docs/cluster.md) ---- */
typedef struct cluster cluster;
/* Another host holds the lock, or etcd cannot be reached: try again after lock_ttl. */
enum { CLUSTER_BUSY = 101 }; /* never an exit code: main.c turns it into EXIT_FAIL */
typedef struct cluster_lock {
    char name[256];
    int64_t lock_rev; /* create revision of our lock key */
    int64_t cert_rev; /* mod revision of the certificate when we took the lock (0: none) */
} cluster_lock;
typedef struct {
    const char *name;
    mode_t mode;
    bool secret; /* sealed in etcd */
} cluster_file;
/* NULL (logged) when the secrets cannot be read; etcd is not contacted here. */
cluster *cluster_open(const config_cluster *cfg, const char *state_dir);
void cluster_close(cluster *c);
/* cluster_close for a certd about to re-execute itself: its lease (and the host's place among
 * the hosts) passes to the next self through the environment instead of being revoked. */
void cluster_hand_over(cluster *c);
/* 0 held (etcd's current certificate for name is in the local store by then, *changed when
 * that replaced ours), CLUSTER_BUSY, -1. */
int cluster_lock_take(cluster *c, const certd_opts *o, const char *name, cluster_lock *l,
                      bool *changed);
void cluster_lock_release(cluster *c, cluster_lock *l);
/* 0 when the lock is still ours (checked in etcd), -1 (logged) otherwise. */
int cluster_lock_held(cluster *c, const cluster_lock *l);
/* Fenced write of a new certificate, then the local store; -1 (logged) when the lock was lost
 * or etcd failed: the certificate is then dropped. */
int cluster_publish(cluster *c, const certd_opts *o, const cluster_lock *l, const order_result *res,
                    const char *key_pem, size_t key_len, json_t *meta, bool *changed);
/* A certificate document from etcd into the local store when newer than the local one. */
int cluster_import(cluster *c, const certd_opts *o, const char *name, const char *value, size_t len,
                   bool *changed);
/* Files of dir shared under PREFIX what: etcd's copy replaces the local one; the first host's
 * local copy goes to etcd; when neither has them, make(arg) (may be NULL) creates them in dir
 * first. 0 when dir then holds the shared copy, -1 (logged) otherwise. */
int cluster_share_files(cluster *c, const char *what, const char *dir, const cluster_file *f,
                        size_t n, int (*make)(void *arg), void *arg);
int cluster_challenge_put(cluster *c, const char *token, const char *key_auth);
/* Until every live host has the token (or challenge_wait passed: logged, 0). */
int cluster_challenge_wait(cluster *c, const char *token);
void cluster_challenge_remove(cluster *c, const char *token);

/* ---- cluster_sync.c: the daemon's thread mirroring etcd into the local files ---- */
int cluster_sync_start(cluster *c, const certd_opts *o);
void cluster_sync_stop(cluster *c);

/* ---- reload.c: tell the edge, only after a real change ---- */
int reload_after_change(const certd_opts *o);

/* ---- daemon.c ---- */
int daemon_run(const certd_opts *o);

/* ---- metrics.c: the daemon's metrics, when the supervisor set HEARTH_METRICS_DIR ---- */
void certd_metrics_open(void);
/* A renewal or issuance attempt for name ended with rc (EXIT_NOTHING: none was made). */
void certd_metrics_attempt(const char *name, int rc);
/* Each stored certificate's expiry, read again after each pass. */
void certd_metrics_certs(const certd_opts *o);

#endif
