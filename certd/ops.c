/* The one-shot commands: issue, renew, list, revoke, roll the account key over. Each decides,
 * logs its decision once, and returns a certd exit code. */
#include "certd/certd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/log.h"

static int open_directory(const certd_opts *o, acme_ctx *a)
{
    if (acme_init(a, o->server, o->ca_bundle, o->timeout_ms) < 0)
        return -1;
    return acme_directory(a);
}

static int make_account_key(void *dir)
{
    EVP_PKEY *made = account_key_load(dir, true);
    EVP_PKEY_free(made);
    return made ? 0 : -1;
}

/* The account key; in a cluster the one every host shares (the first host's). */
static EVP_PKEY *load_account_key(const certd_opts *o, const char *dir, bool create)
{
    static const cluster_file files[] = {{"account.key", 0600, true}};
    if (!o->cluster)
        return account_key_load(dir, create);
    char what[512];
    snprintf(what, sizeof(what), "account/%s", strrchr(dir, '/') + 1);
    if (cluster_share_files(o->cluster, what, dir, files, 1, create ? make_account_key : NULL,
                            (void *)dir) < 0)
        return NULL;
    return account_key_load(dir, false);
}

static int open_account(const certd_opts *o, acme_ctx *a, bool create)
{
    char *dir = account_dir_for(o);
    int rc = -1;
    if (dir && account_finish_rollover(a, o, dir) == 0)
        rc = 0;
    else if (dir && (a->key = load_account_key(o, dir, create)) != NULL)
        rc = account_register(a, o, !create);
    else if (dir)
        log_error("%s: no account key", dir);
    free(dir);
    return rc;
}

/* Directory, account key, account: what every command talking to the CA needs first. */
static int connect_ca(const certd_opts *o, acme_ctx *a, bool create_account)
{
    if (open_directory(o, a) < 0)
        return -1;
    return open_account(o, a, create_account);
}

/* Names recorded for a stored certificate: meta "domains", else the SANs, name first. */
static int stored_names(const char *name, json_t *meta, const cert_info *info, certd_names *out)
{
    json_t *doms = json_object_get(meta, "domains"), *d;
    size_t i;
    out->count = 0;
    out->names = calloc(CERTD_MAX_NAMES, sizeof(char *));
    if (!out->names)
        return -1;
    json_array_foreach(doms, i, d)
    {
        if (json_is_string(d) && store_name_ok(json_string_value(d)) &&
            out->count < CERTD_MAX_NAMES)
            out->names[out->count++] = strdup(json_string_value(d));
    }
    if (out->count == 0) {
        out->names[out->count++] = strdup(name);
        for (i = 0; i < info->name_count && out->count < CERTD_MAX_NAMES; i++)
            if (strcasecmp(info->names[i], name) != 0)
                out->names[out->count++] = strdup(info->names[i]);
    }
    return 0;
}

static void free_names(certd_names *n)
{
    for (size_t i = 0; i < n->count; i++)
        free(n->names[i]);
    free(n->names);
    n->names = NULL;
    n->count = 0;
}

/* Load name's stored leaf; -1 when there is none. */
static int load_info(const certd_opts *o, const char *name, cert_info *info, json_t **meta)
{
    char *chain = NULL, err[128];
    size_t len = 0;
    if (store_load(o->cert_dir, name, &chain, &len, NULL, NULL, meta) < 0)
        return -1;
    int rc = certinfo_parse(chain, len, info, err, sizeof(err));
    free(chain);
    if (rc < 0) {
        log_warn("%s: stored certificate unreadable: %s", name, err);
        json_decref(*meta);
        *meta = NULL;
    }
    return rc;
}

static time_t ari_renew_time(acme_ctx *a, const cert_info *info)
{
    const char *base = acme_dir_url(a, "renewalInfo");
    if (!base || !info->ari_id)
        return 0;
    char url[2048];
    snprintf(url, sizeof(url), "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/",
             info->ari_id);
    acme_reply r;
    time_t start, end, when = 0;
    json_t *w = acme_get(a, url, &r) == 0 ? json_object_get(r.json, "suggestedWindow") : NULL;
    if (w && schedule_parse_rfc3339(certd_json_str(w, "start"), &start) == 0 &&
        schedule_parse_rfc3339(certd_json_str(w, "end"), &end) == 0 && end >= start)
        when = schedule_ari_pick(start, end, wait_random());
    else
        log_warn("renewalInfo for %s unusable; using the certificate's lifetime", info->ari_id);
    acme_reply_free(&r);
    return when;
}

int ops_cert_info(const certd_opts *o, const char *name, cert_info *info)
{
    json_t *meta = NULL;
    int rc = load_info(o, name, info, &meta);
    json_decref(meta);
    return rc;
}

int ops_renew_time(const certd_opts *o, acme_ctx *a, const char *name, time_t *when)
{
    cert_info info;
    json_t *meta = NULL;
    if (load_info(o, name, &info, &meta) < 0)
        return -1;
    *when = schedule_renew_at(info.not_before, info.not_after, o->renew_fraction);
    time_t ari = a && a->dir ? ari_renew_time(a, &info) : 0;
    if (ari)
        *when = ari;
    if (json_is_true(json_object_get(meta, "revoked")))
        *when = 0;
    certinfo_free(&info);
    json_decref(meta);
    return 0;
}

static bool same_names(const cert_info *info, const certd_names *names)
{
    if (info->name_count != names->count)
        return false;
    for (size_t i = 0; i < names->count; i++) {
        bool found = false;
        for (size_t j = 0; j < info->name_count && !found; j++)
            found = strcasecmp(info->names[j], names->names[i]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* EXIT_NOTHING when the stored certificate has these names and is not yet due. */
static int check_not_due(const certd_opts *o, const certd_names *names, acme_ctx *a)
{
    cert_info info;
    json_t *meta = NULL;
    if (load_info(o, names->names[0], &info, &meta) < 0)
        return 0;
    const char *server = certd_json_str(meta, "server");
    bool internal = server && strcmp(server, "internal") == 0;
    bool same = same_names(&info, names) && internal == names->internal;
    certinfo_free(&info);
    json_decref(meta);
    time_t when;
    if (!same || ops_renew_time(o, a, names->names[0], &when) < 0 || when <= time(NULL))
        return 0;
    char at[64];
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(at, sizeof(at), "%Y-%m-%d %H:%M:%S UTC", &tm);
    log_info("%s: not due for renewal until %s", names->names[0], at);
    return EXIT_NOTHING;
}

static json_t *make_meta(const certd_opts *o, const certd_names *names, const char *chain,
                         size_t len)
{
    cert_info info;
    char err[128];
    json_t *doms = json_array();
    for (size_t i = 0; i < names->count; i++)
        json_array_append_new(doms, json_string(names->names[i]));
    json_t *m = json_pack(
        "{s:o, s:s, s:s, s:I}", "domains", doms, "key_type", key_type_name(o->key_type), "server",
        names->internal ? "internal" : o->server, "issued_at", (json_int_t)time(NULL));
    if (m && certinfo_parse(chain, len, &info, err, sizeof(err)) == 0) {
        json_object_set_new(m, "serial", json_string(info.serial));
        json_object_set_new(m, "not_before", json_integer((json_int_t)info.not_before));
        json_object_set_new(m, "not_after", json_integer((json_int_t)info.not_after));
        certinfo_free(&info);
    }
    return m;
}

static int save_result(const certd_opts *o, const certd_names *names, order_result *res)
{
    size_t key_len = 0;
    char *key = key_to_pem(res->key, &key_len);
    json_t *meta = make_meta(o, names, res->chain, res->chain_len);
    bool changed = false;
    int rc = -1;
    if (key && meta && o->locked) /* a cluster: etcd first, fenced; then the local store */
        rc = cluster_publish(o->cluster, o, o->locked, res, key, key_len, meta, &changed);
    else if (key && meta)
        rc = store_save(o->cert_dir, names->names[0], res->chain, res->chain_len, key, key_len,
                        meta);
    if (key)
        OPENSSL_cleanse(key, key_len);
    free(key);
    json_decref(meta);
    return rc;
}

static const char *replaces_id(const certd_opts *o, acme_ctx *a, const char *name, char **out)
{
    cert_info info;
    json_t *meta = NULL;
    *out = NULL;
    if (acme_dir_url(a, "renewalInfo") && load_info(o, name, &info, &meta) == 0) {
        *out = info.ari_id ? strdup(info.ari_id) : NULL;
        certinfo_free(&info);
        json_decref(meta);
    }
    return *out;
}

/* Save a new certificate (unless --dry-run); EXIT_OK or EXIT_FAIL. */
static int keep_result(const certd_opts *o, const certd_names *names, order_result *res,
                       bool *changed)
{
    if (o->dry_run) {
        log_info("%s: dry run: certificate obtained and checked, nothing written", names->names[0]);
        return EXIT_OK;
    }
    if (save_result(o, names, res) < 0)
        return EXIT_FAIL;
    *changed = true;
    log_info("%s: certificate saved in %s/%s", names->names[0], o->cert_dir, names->names[0]);
    return EXIT_OK;
}

static int issue_internal(const certd_opts *o, const certd_names *names, bool force, bool *changed)
{
    if (!force && check_not_due(o, names, NULL) == EXIT_NOTHING)
        return EXIT_NOTHING;
    order_result res;
    int rc = internal_issue(o, names, &res) == 0 ? keep_result(o, names, &res, changed) : EXIT_FAIL;
    order_result_free(&res);
    return rc;
}

static int issue_locked(const certd_opts *o, const certd_names *names, bool force, bool *changed)
{
    if (names->internal)
        return issue_internal(o, names, force, changed);
    acme_ctx a;
    bool dir_ok = open_directory(o, &a) == 0;
    /* With the CA unreachable, a certificate that is not due is still "nothing to do". */
    int rc = force ? 0 : check_not_due(o, names, dir_ok ? &a : NULL);
    if (rc == EXIT_NOTHING || !dir_ok || open_account(o, &a, true) < 0) {
        acme_free(&a);
        return rc == EXIT_NOTHING ? rc : EXIT_FAIL;
    }
    char *replaces;
    order_result res;
    log_info("%s: ordering a certificate for %zu name(s)", names->names[0], names->count);
    rc = order_run(&a, o, names, replaces_id(o, &a, names->names[0], &replaces), &res) == 0
             ? EXIT_OK
             : EXIT_FAIL;
    if (rc == EXIT_OK)
        rc = keep_result(o, names, &res, changed);
    order_result_free(&res);
    free(replaces);
    acme_free(&a);
    return rc;
}

/* In a cluster: under the certificate's lock in etcd, once etcd's copy is in the local store
 * (another host may have renewed it meanwhile). A certificate that is not due here is not
 * worth a lock. */
static int issue_shared(const certd_opts *o, const certd_names *names, bool force, bool *changed)
{
    if (!force && check_not_due(o, names, NULL) == EXIT_NOTHING)
        return EXIT_NOTHING;
    cluster_lock l;
    int rc = cluster_lock_take(o->cluster, o, names->names[0], &l, changed);
    if (rc != 0)
        return rc == CLUSTER_BUSY ? CLUSTER_BUSY : EXIT_FAIL;
    certd_opts locked = *o;
    locked.locked = &l;
    rc = issue_locked(&locked, names, force, changed);
    cluster_lock_release(o->cluster, &l);
    return rc;
}

/* A certd killed mid-order (SIGKILL, a power cut) never removed its challenge files; the
 * next run holding the lock does, before it writes its own. Not in a cluster: there the
 * webroot also holds the tokens of other hosts' orders (same account, so they look alike),
 * mirrored by the sync thread, which removes them when their order ends. */
static void sweep_challenges(const certd_opts *o)
{
    if (o->cluster)
        return;
    char *dir = account_dir_for(o);
    EVP_PKEY *key = dir ? account_key_load(dir, false) : NULL;
    char *thumb = key ? jws_thumbprint(key) : NULL;
    if (thumb && o->webroot)
        challenge_sweep(o->webroot, thumb);
    free(thumb);
    EVP_PKEY_free(key);
    free(dir);
}

int ops_issue(const certd_opts *o, const certd_names *names, bool force, bool *changed)
{
    for (size_t i = 0; i < names->count; i++) {
        /* HTTP-01 cannot prove a wildcard; the internal CA can sign one */
        if (!store_name_ok(names->names[i]) || (names->names[i][0] == '*' && !names->internal)) {
            log_error("%s: not a name certd can get a certificate for%s", names->names[i],
                      names->internal ? "" : " over HTTP-01");
            return EXIT_USAGE;
        }
    }
    int lock = store_lock(o->cert_dir, o->timeout_ms);
    if (lock < 0)
        return EXIT_FAIL;
    sweep_challenges(o);
    int rc = o->cluster ? issue_shared(o, names, force, changed)
                        : issue_locked(o, names, force, changed);
    store_unlock(lock);
    return rc;
}

int ops_renew_one(const certd_opts *o, const char *name, bool force, bool *changed)
{
    cert_info info;
    json_t *meta = NULL;
    if (load_info(o, name, &info, &meta) < 0)
        return EXIT_FAIL;
    certd_names names = {0};
    certd_opts oo = *o;
    const char *kt = certd_json_str(meta, "key_type");
    if (!(kt && key_type_parse(kt, &oo.key_type) == 0) && info.key_type_known)
        oo.key_type = info.key_type;
    int rc = stored_names(name, meta, &info, &names) == 0 ? 0 : EXIT_FAIL;
    const char *server = certd_json_str(meta, "server");
    names.internal = server && strcmp(server, "internal") == 0;
    if (rc == 0)
        rc = ops_issue(&oo, &names, force, changed);
    free_names(&names);
    certinfo_free(&info);
    json_decref(meta);
    return rc;
}

int ops_renew_all(const certd_opts *o, bool force, bool *changed)
{
    char **names;
    size_t count;
    if (store_list(o->cert_dir, &names, &count) < 0) {
        log_error("%s: cannot list certificates", o->cert_dir);
        return EXIT_FAIL;
    }
    int failed = 0, renewed = 0;
    for (size_t i = 0; i < count && !wait_stop_requested(); i++) {
        int rc = ops_renew_one(o, names[i], force, changed);
        if (rc == EXIT_OK)
            renewed++;
        else if (rc != EXIT_NOTHING)
            failed++;
    }
    store_free_list(names, count);
    log_info("renew: %d renewed, %d failed, %zu certificate(s) in %s", renewed, failed, count,
             o->cert_dir);
    if (failed)
        return EXIT_FAIL;
    return renewed ? EXIT_OK : EXIT_NOTHING;
}

static void print_one(const certd_opts *o, const char *name)
{
    cert_info info;
    json_t *meta = NULL;
    if (load_info(o, name, &info, &meta) < 0) {
        printf("%s\n  (unreadable)\n", name);
        return;
    }
    char at[64];
    struct tm tm;
    gmtime_r(&info.not_after, &tm);
    strftime(at, sizeof(at), "%Y-%m-%d %H:%M:%S UTC", &tm);
    double days = difftime(info.not_after, time(NULL)) / 86400.0;
    printf("%s\n  names:   ", name);
    for (size_t i = 0; i < info.name_count; i++)
        printf("%s%s", i ? " " : "", info.names[i]);
    printf("\n  key:     %s\n  expires: %s (%s%.1f days left)\n  serial:  %s\n",
           info.key_type_known ? key_type_name(info.key_type) : "unknown", at,
           days < 0 ? "EXPIRED, " : "", days < 0 ? 0.0 : days, info.serial);
    const char *server = certd_json_str(meta, "server");
    if (server)
        printf("  issuer:  %s\n", strcmp(server, "internal") == 0 ? "internal CA" : server);
    if (json_is_true(json_object_get(meta, "revoked")))
        printf("  REVOKED\n");
    certinfo_free(&info);
    json_decref(meta);
}

int ops_list(const certd_opts *o)
{
    char **names;
    size_t count;
    if (store_list(o->cert_dir, &names, &count) < 0) {
        log_error("%s: cannot list certificates", o->cert_dir);
        return EXIT_FAIL;
    }
    if (count == 0)
        printf("no certificates in %s\n", o->cert_dir);
    for (size_t i = 0; i < count; i++)
        print_one(o, names[i]);
    store_free_list(names, count);
    return EXIT_OK;
}

/* Record the revocation in the current version's meta.json (one atomic file write). */
static void mark_revoked(const certd_opts *o, const char *name, json_t *meta, int reason)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s", o->cert_dir, name);
    json_object_set_new(meta, "revoked", json_true());
    json_object_set_new(meta, "revocation_reason", json_integer(reason));
    char *text = json_dumps(meta, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text)
        store_write_file(dir, "meta.json", text, strlen(text), 0644);
    free(text);
}

int ops_revoke(const certd_opts *o, const char *name)
{
    char *chain = NULL;
    size_t len = 0, derlen = 0;
    json_t *meta = NULL;
    if (store_load(o->cert_dir, name, &chain, &len, NULL, NULL, &meta) < 0) {
        log_error("%s: no stored certificate", name);
        return EXIT_FAIL;
    }
    unsigned char *der = certinfo_leaf_der(chain, len, &derlen);
    char *b64 = der ? b64url_encode(der, derlen) : NULL;
    OPENSSL_free(der);
    free(chain);
    acme_ctx a;
    int rc = EXIT_FAIL;
    if (b64 && connect_ca(o, &a, false) == 0 && acme_dir_url(&a, "revokeCert")) {
        acme_reply r;
        if (acme_post(&a, acme_dir_url(&a, "revokeCert"),
                      json_pack("{s:s, s:i}", "certificate", b64, "reason", o->revoke_reason),
                      &r) == 0) {
            rc = EXIT_OK;
            mark_revoked(o, name, meta, o->revoke_reason);
            log_info("%s: revoked (reason %d)", name, o->revoke_reason);
        }
        acme_reply_free(&r);
    }
    if (b64)
        acme_free(&a);
    free(b64);
    json_decref(meta);
    return rc;
}

int ops_rollover(const certd_opts *o)
{
    acme_ctx a;
    char *dir = account_dir_for(o);
    int rc = EXIT_FAIL;
    if (dir && connect_ca(o, &a, false) == 0 && account_rollover(&a, dir) == 0) {
        char *kid = strdup(a.kid);
        /* Ask the CA again with the new key: it must find the same account. */
        if (account_register(&a, o, true) == 0 && kid && strcmp(kid, a.kid) == 0) {
            log_info("account %s now uses the new key", a.kid);
            rc = EXIT_OK;
        } else {
            log_error("the CA does not know the new key as account %s", kid ? kid : "?");
        }
        free(kid);
    }
    if (dir)
        acme_free(&a);
    free(dir);
    return rc;
}
