/* The ACME account: its key (ECDSA P-256, 0600, one per CA directory URL), registration or
 * lookup with newAccount, and key rollover (RFC 8555 7.3.5). */
#include "certd/certd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/log.h"

#define ACCOUNT_KEY "account.key"
#define ACCOUNT_KEY_NEXT "account.key.next"
#define ACCOUNT_KEY_PREV "account.key.prev"

/* "https://acme.example/dir" -> "acme.example_dir": one account per CA, staging apart. */
static void server_slug(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = 0;
    for (; *p && n + 1 < outlen; p++) {
        char c = *p;
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-';
        out[n++] = keep ? c : '_';
    }
    out[n] = '\0';
}

char *account_dir_for(const certd_opts *o)
{
    char slug[256], path[PATH_MAX];
    server_slug(o->server, slug, sizeof(slug));
    if (o->account_dir) {
        snprintf(path, sizeof(path), "%s/%s", o->account_dir, slug);
    } else {
        /* next to the cert dir, as certbot keeps accounts/ beside live/ */
        snprintf(path, sizeof(path), "%s/../accounts/%s", o->cert_dir, slug);
    }
    return strdup(path);
}

static EVP_PKEY *read_key(const char *dir, const char *file)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    size_t len = 0;
    char *pem = store_read_file(path, 1 << 16, &len);
    if (!pem)
        return NULL;
    EVP_PKEY *key = key_from_pem(pem, len);
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (!key)
        log_error("%s: not a PEM private key", path);
    return key;
}

static int write_key(const char *dir, const char *file, EVP_PKEY *key)
{
    size_t len = 0;
    char *pem = key_to_pem(key, &len);
    int rc = pem ? store_write_file(dir, file, pem, len, 0600) : -1;
    if (pem)
        OPENSSL_cleanse(pem, len);
    free(pem);
    return rc;
}

EVP_PKEY *account_key_load(const char *dir, bool create)
{
    EVP_PKEY *key = read_key(dir, ACCOUNT_KEY);
    if (key || !create)
        return key;
    if (store_mkdirs(dir, 0700) < 0)
        return NULL;
    key = key_generate(KEY_EC256);
    if (!key || write_key(dir, ACCOUNT_KEY, key) < 0) {
        log_error("%s: cannot create the account key", dir);
        EVP_PKEY_free(key);
        return NULL;
    }
    log_info("created account key %s/" ACCOUNT_KEY, dir);
    return key;
}

/* newAccount payload; NULL (logged) when the CA's conditions are not met. */
static json_t *account_payload(acme_ctx *a, const certd_opts *o, bool only_existing)
{
    json_t *meta = json_object_get(a->dir, "meta");
    const char *tos = certd_json_str(meta, "termsOfService");
    if (!only_existing && tos && !o->agree_tos) {
        log_error("the CA's terms of service are at %s; agree with --agree-tos", tos);
        return NULL;
    }
    bool eab_required = json_is_true(json_object_get(meta, "externalAccountRequired"));
    if (!only_existing && eab_required && !(o->eab_kid && o->eab_hmac_key)) {
        log_error("the CA requires external account binding: --eab-kid and --eab-hmac-key");
        return NULL;
    }
    json_t *p = json_object();
    if (only_existing)
        json_object_set_new(p, "onlyReturnExisting", json_true());
    else
        json_object_set_new(p, "termsOfServiceAgreed", json_boolean(o->agree_tos));
    if (o->email && !only_existing) {
        char contact[320];
        snprintf(contact, sizeof(contact), "mailto:%s", o->email);
        json_object_set_new(p, "contact", json_pack("[s]", contact));
    }
    if (o->eab_kid && o->eab_hmac_key && !only_existing) {
        json_t *eab = jws_eab(o->eab_kid, o->eab_hmac_key, a->key, acme_dir_url(a, "newAccount"));
        if (!eab) {
            log_error("--eab-hmac-key is not base64url");
            json_decref(p);
            return NULL;
        }
        json_object_set_new(p, "externalAccountBinding", eab);
    }
    return p;
}

int account_register(acme_ctx *a, const certd_opts *o, bool only_existing)
{
    json_t *payload = account_payload(a, o, only_existing);
    if (!payload)
        return -1;
    free(a->kid);
    a->kid = NULL; /* newAccount is signed with the JWK, not a kid */
    acme_reply r;
    int rc = acme_post(a, acme_dir_url(a, "newAccount"), payload, &r);
    const char *status = certd_json_str(r.json, "status");
    if (rc == 0 && (!r.location || strncmp(r.location, "https://", 8) != 0)) {
        log_error("newAccount: the CA sent no account URL");
        rc = -1;
    } else if (rc == 0 && status && strcmp(status, "valid") != 0) {
        log_error("the account is %s", status);
        rc = -1;
    }
    if (rc == 0) {
        a->kid = r.location, r.location = NULL;
        log_debug("account %s (HTTP %ld)", a->kid, r.status);
    }
    acme_reply_free(&r);
    return rc;
}

/* The inner JWS of keyChange: signed by the new key, no nonce, payload names the account. */
static json_t *rollover_inner(acme_ctx *a, EVP_PKEY *new_key, const char *url)
{
    json_t *p = json_pack("{s:s, s:o}", "account", a->kid, "oldKey", jws_jwk(a->key));
    char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    json_t *inner = text ? jws_sign(new_key, NULL, NULL, url, text) : NULL;
    free(text);
    return inner;
}

int account_rollover(acme_ctx *a, const char *dir)
{
    const char *url = acme_dir_url(a, "keyChange");
    if (!url) {
        log_error("the CA does not offer key rollover (no keyChange)");
        return -1;
    }
    EVP_PKEY *new_key = key_generate(KEY_EC256);
    /* Written before asking, so a crash after the CA switched still leaves the new key. */
    if (!new_key || write_key(dir, ACCOUNT_KEY_NEXT, new_key) < 0) {
        EVP_PKEY_free(new_key);
        return -1;
    }
    acme_reply r;
    int rc = acme_post(a, url, rollover_inner(a, new_key, url), &r);
    acme_reply_free(&r);
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof(from), "%s/" ACCOUNT_KEY_NEXT, dir);
    if (rc == 0) {
        rc = write_key(dir, ACCOUNT_KEY_PREV, a->key);
        snprintf(to, sizeof(to), "%s/" ACCOUNT_KEY, dir);
        if (rc == 0 && rename(from, to) < 0) {
            log_error("%s: %s (the new key is in %s)", to, strerror(errno), from);
            rc = -1;
        }
        if (rc == 0) {
            EVP_PKEY_free(a->key);
            a->key = new_key;
            new_key = NULL;
        }
    } else {
        unlink(from);
    }
    EVP_PKEY_free(new_key);
    return rc;
}

int account_finish_rollover(acme_ctx *a, const certd_opts *o, const char *dir)
{
    char next[PATH_MAX], cur[PATH_MAX], prev[PATH_MAX];
    snprintf(next, sizeof(next), "%s/" ACCOUNT_KEY_NEXT, dir);
    snprintf(cur, sizeof(cur), "%s/" ACCOUNT_KEY, dir);
    snprintf(prev, sizeof(prev), "%s/" ACCOUNT_KEY_PREV, dir);
    if (access(next, F_OK) < 0)
        return -1;
    EVP_PKEY *old = a->key;
    a->key = read_key(dir, ACCOUNT_KEY_NEXT);
    log_info("%s: checking whether an interrupted key rollover reached the CA", next);
    bool adopted = a->key && account_register(a, o, true) == 0;
    if (adopted) {
        /* the account is open with the right key whatever the renames do */
        if (rename(cur, prev) == 0 && rename(next, cur) == 0)
            log_info("finished an interrupted key rollover: account %s uses %s", a->kid, cur);
        else
            log_error("%s: %s (the account's key is %s)", cur, strerror(errno), next);
        EVP_PKEY_free(old);
        return 0;
    }
    log_info("the CA never switched keys; dropping %s", next);
    unlink(next);
    EVP_PKEY_free(a->key);
    a->key = old;
    return -1;
}
