/* The PKCS#10 certificate signing request sent to finalize an order: every name in
 * subjectAltName (the CN alone means nothing to an ACME CA), signed by the new key. */
#include "certd/certd.h"

#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

static int add_san(X509_REQ *req, const certd_names *names)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens)
        return -1;
    for (size_t i = 0; i < names->count; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || !ASN1_STRING_set(s, names->names[i], (int)strlen(names->names[i]))) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            sk_GENERAL_NAME_pop_free(gens, GENERAL_NAME_free);
            return -1;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        sk_GENERAL_NAME_push(gens, g);
    }
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    int rc = -1;
    if (exts && ext && sk_X509_EXTENSION_push(exts, ext) && X509_REQ_add_extensions(req, exts))
        rc = 0;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (rc < 0 && ext && !exts)
        X509_EXTENSION_free(ext);
    sk_GENERAL_NAME_pop_free(gens, GENERAL_NAME_free);
    return rc;
}

static int set_subject(X509_REQ *req, const char *cn)
{
    X509_NAME *name = X509_REQ_get_subject_name(req);
    /* A CN longer than 64 bytes is not allowed; the SAN carries the name anyway. */
    if (strlen(cn) > 64)
        return 0;
    return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                      0)
               ? 0
               : -1;
}

unsigned char *csr_build(EVP_PKEY *key, const certd_names *names, size_t *derlen)
{
    X509_REQ *req = X509_REQ_new();
    unsigned char *der = NULL;
    if (!req || names->count == 0)
        goto out;
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) || set_subject(req, names->names[0]) < 0 ||
        add_san(req, names) < 0 || !X509_REQ_set_pubkey(req, key) ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto out;
    int n = i2d_X509_REQ(req, &der);
    if (n <= 0)
        der = NULL;
    else
        *derlen = (size_t)n;
out:
    X509_REQ_free(req);
    return der;
}
