/* tls: internal: a local CA created once (INTERNAL_CA_DIR/ca.pem, ca.key 0600) signing
 * development certificates, stored like ACME ones so the edge needs no second code path. */
#include "certd/certd.h"

#include <arpa/inet.h>
#include <limits.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/log.h"

#define CA_DAYS 3650
#define LEAF_DAYS 30

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext && X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Version 3, random serial, validity from a minute ago (clock skew) for days. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, int days)
{
    X509 *x = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    if (!x || RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f; /* positive */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    X509_NAME *name = X509_get_subject_name(x);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || !X509_set_version(x, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -60) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) || !X509_set_pubkey(x, key) ||
        (strlen(cn) <= 64 && !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                         (const unsigned char *)cn, -1, -1, 0)))
        goto fail;
    BN_free(bn);
    return x;
fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

static X509 *ca_create(EVP_PKEY *key)
{
    char cn[64];
    unsigned char id[4];
    RAND_bytes(id, sizeof(id));
    snprintf(cn, sizeof(cn), "hearth internal CA %02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
    X509 *x = new_cert(key, cn, CA_DAYS);
    if (!x || !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(x, x, NID_subject_key_identifier, "hash") < 0 || !X509_sign(x, key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static char *cert_to_pem(X509 *x, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL, *data;
    if (bio && PEM_write_bio_X509(bio, x)) {
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && (out = strndup(data, (size_t)n)))
            *len = (size_t)n;
    }
    BIO_free(bio);
    return out;
}

static int ca_save(const char *dir, EVP_PKEY *key, X509 *cert)
{
    size_t klen = 0, clen = 0;
    char *kpem = key_to_pem(key, &klen), *cpem = cert_to_pem(cert, &clen);
    /* the key first: a CA certificate without its key would be a dead end */
    int rc = kpem && cpem && store_mkdirs(dir, 0700) == 0 &&
                     store_write_file(dir, "ca.key", kpem, klen, 0600) == 0 &&
                     store_write_file(dir, "ca.pem", cpem, clen, 0644) == 0
                 ? 0
                 : -1;
    if (kpem)
        OPENSSL_cleanse(kpem, klen);
    free(kpem);
    free(cpem);
    return rc;
}

static int ca_load(const char *dir, EVP_PKEY **key, X509 **cert)
{
    char path[PATH_MAX];
    size_t klen = 0, clen = 0;
    snprintf(path, sizeof(path), "%s/ca.key", dir);
    char *kpem = store_read_file(path, 1 << 16, &klen);
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    char *cpem = store_read_file(path, 1 << 16, &clen);
    *key = kpem ? key_from_pem(kpem, klen) : NULL;
    BIO *bio = cpem ? BIO_new_mem_buf(cpem, (int)clen) : NULL;
    *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (kpem)
        OPENSSL_cleanse(kpem, klen);
    free(kpem);
    free(cpem);
    if (*key && *cert && X509_check_private_key(*cert, *key) == 1)
        return 0;
    if (*key || *cert)
        log_error("%s: ca.pem and ca.key are missing, unreadable or do not match", dir);
    return -1;
}

static int ca_open(const char *dir, EVP_PKEY **key, X509 **cert)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/ca.key", dir);
    if (access(path, F_OK) == 0)
        return ca_load(dir, key, cert);
    *key = key_generate(KEY_EC256);
    *cert = *key ? ca_create(*key) : NULL;
    if (!*cert || ca_save(dir, *key, *cert) < 0) {
        log_error("%s: cannot create the internal CA", dir);
        return -1;
    }
    log_info("created the internal CA in %s (trust %s/ca.pem on development machines)", dir, dir);
    return 0;
}

/* "DNS:a,IP:127.0.0.1,..." for the subjectAltName extension. */
static char *san_value(const certd_names *names)
{
    size_t cap = 16;
    for (size_t i = 0; i < names->count; i++)
        cap += strlen(names->names[i]) + 5;
    char *v = malloc(cap);
    if (!v)
        return NULL;
    v[0] = '\0';
    for (size_t i = 0; i < names->count; i++) {
        unsigned char ip[16];
        bool is_ip = inet_pton(AF_INET, names->names[i], ip) == 1 ||
                     inet_pton(AF_INET6, names->names[i], ip) == 1;
        strcat(v, i ? "," : "");
        strcat(v, is_ip ? "IP:" : "DNS:");
        strcat(v, names->names[i]);
    }
    return v;
}

static X509 *leaf_sign(EVP_PKEY *key, const certd_names *names, EVP_PKEY *ca_key, X509 *ca)
{
    char *san = san_value(names);
    bool rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
    X509 *x = san ? new_cert(key, names->names[0], LEAF_DAYS) : NULL;
    if (!x || !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
        add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, ca, NID_key_usage,
                rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature") <
            0 ||
        add_ext(x, ca, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, ca, NID_subject_alt_name, san) < 0 ||
        add_ext(x, ca, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, ca, NID_authority_key_identifier, "keyid:always") < 0 ||
        !X509_sign(x, ca_key, EVP_sha256())) {
        X509_free(x);
        x = NULL;
    }
    free(san);
    return x;
}

/* The CA; in a cluster the one every host shares (the first host's), so that a browser
 * trusting it trusts every host. */
static int make_ca(void *dir)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc = ca_open(dir, &key, &cert);
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

static int open_shared_ca(const certd_opts *o, EVP_PKEY **key, X509 **cert)
{
    static const cluster_file files[] = {{"ca.key", 0600, true}, {"ca.pem", 0644, false}};
    const char *dir = o->internal_ca_dir;
    if (!o->cluster)
        return ca_open(dir, key, cert);
    if (cluster_share_files(o->cluster, "internal-ca", dir, files, 2, make_ca, (void *)dir) < 0)
        return -1;
    return ca_load(dir, key, cert);
}

int internal_issue(const certd_opts *o, const certd_names *names, order_result *out)
{
    memset(out, 0, sizeof(*out));
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL, *leaf = NULL;
    int rc = -1;
    if (open_shared_ca(o, &ca_key, &ca) < 0)
        goto done;
    out->key = key_generate(o->key_type);
    leaf = out->key ? leaf_sign(out->key, names, ca_key, ca) : NULL;
    size_t llen = 0, clen = 0;
    char *lpem = leaf ? cert_to_pem(leaf, &llen) : NULL, *cpem = cert_to_pem(ca, &clen);
    if (lpem && cpem && (out->chain = malloc(llen + clen + 1))) {
        memcpy(out->chain, lpem, llen);
        memcpy(out->chain + llen, cpem, clen + 1);
        out->chain_len = llen + clen;
        rc = 0;
    }
    free(lpem);
    free(cpem);
done:
    if (rc < 0) {
        log_error("%s: cannot sign an internal certificate", names->names[0]);
        order_result_free(out);
    }
    EVP_PKEY_free(ca_key);
    X509_free(ca);
    X509_free(leaf);
    return rc;
}
