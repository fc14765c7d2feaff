/* Reading certificates: the dates, serial, names and key type of a chain's leaf, and the checks
 * a downloaded chain must pass before it may replace what is being served. */
#include "certd/certd.h"

#include <arpa/inet.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static X509 *leaf_of(const char *pem, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return x;
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

/* An iPAddress SAN as text (internal certificates name 127.0.0.1 and ::1). */
static char *ip_text(const ASN1_OCTET_STRING *ip)
{
    char text[INET6_ADDRSTRLEN];
    int len = ASN1_STRING_length(ip);
    int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : -1;
    if (af < 0 || !inet_ntop(af, ASN1_STRING_get0_data(ip), text, sizeof(text)))
        return NULL;
    return strdup(text);
}

static int collect_names(X509 *x, cert_info *info)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = gens ? sk_GENERAL_NAME_num(gens) : 0;
    info->names = calloc((size_t)n + 1, sizeof(char *));
    if (!info->names) {
        GENERAL_NAMES_free(gens);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char *name = NULL;
        if (g->type == GEN_DNS)
            name = strndup((const char *)ASN1_STRING_get0_data(g->d.dNSName),
                           (size_t)ASN1_STRING_length(g->d.dNSName));
        else if (g->type == GEN_IPADD)
            name = ip_text(g->d.iPAddress);
        if (name)
            info->names[info->name_count++] = name;
    }
    GENERAL_NAMES_free(gens);
    return 0;
}

static void serial_hex(X509 *x, char *out, size_t outlen)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    out[0] = '\0';
    if (hex) {
        size_t i = 0;
        for (; hex[i] && i + 1 < outlen; i++)
            out[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] + 32 : hex[i]);
        out[i] = '\0';
    }
    OPENSSL_free(hex);
    BN_free(bn);
}

char *certinfo_ari_id(X509 *leaf)
{
    const ASN1_OCTET_STRING *kid = X509_get0_authority_key_id(leaf);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    if (!kid || !serial)
        return NULL;
    /* The serial's DER content octets, i.e. with the sign-preserving leading zero. */
    unsigned char *der = NULL;
    int n = i2d_ASN1_INTEGER(serial, &der);
    char *a = NULL, *b = NULL, *out = NULL;
    if (n > 2 && der[1] < 0x80) {
        a = b64url_encode(ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid));
        b = b64url_encode(der + 2, (size_t)n - 2);
    }
    if (a && b && (out = malloc(strlen(a) + strlen(b) + 2)))
        sprintf(out, "%s.%s", a, b);
    OPENSSL_free(der);
    free(a);
    free(b);
    return out;
}

int certinfo_parse(const char *pem, size_t len, cert_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof(*info));
    X509 *x = leaf_of(pem, len);
    if (!x) {
        snprintf(err, errlen, "no PEM certificate");
        return -1;
    }
    info->not_before = asn1_time(X509_get0_notBefore(x));
    info->not_after = asn1_time(X509_get0_notAfter(x));
    serial_hex(x, info->serial, sizeof(info->serial));
    info->ari_id = certinfo_ari_id(x);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    info->key_type_known = pub && key_type_of(pub, &info->key_type) == 0;
    int rc = collect_names(x, info);
    X509_free(x);
    if (rc < 0 || info->not_after <= info->not_before) {
        snprintf(err, errlen, "certificate has no usable validity period or names");
        certinfo_free(info);
        return -1;
    }
    return 0;
}

void certinfo_free(cert_info *info)
{
    for (size_t i = 0; i < info->name_count; i++)
        free(info->names[i]);
    free(info->names);
    free(info->ari_id);
    memset(info, 0, sizeof(*info));
}

static bool has_name(const cert_info *info, const char *name)
{
    for (size_t i = 0; i < info->name_count; i++)
        if (info->names[i] && strcasecmp(info->names[i], name) == 0)
            return true;
    return false;
}

/* Every PEM block in the chain must parse (a truncated download must not be stored), and each
 * certificate must be issued by the next one. The count, or -1. */
static int check_chain(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    int n = 0;
    bool linked = true;
    X509 *x, *prev = NULL;
    while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        if (prev && X509_check_issued(x, prev) != X509_V_OK)
            linked = false;
        X509_free(prev);
        prev = x;
        n++;
    }
    X509_free(prev);
    BIO_free(bio);
    size_t blocks = 0;
    for (const char *p = pem; (p = strstr(p, "-----BEGIN CERTIFICATE-----")); p++)
        blocks++;
    return (size_t)n == blocks && linked ? n : -1;
}

int certinfo_check(const char *pem, size_t len, EVP_PKEY *key, const certd_names *names, char *err,
                   size_t errlen)
{
    if (len == 0 || len > INT32_MAX || memchr(pem, '\0', len) || check_chain(pem, len) < 1) {
        snprintf(err, errlen,
                 "the chain is not a list of PEM certificates, each issued by the next");
        return -1;
    }
    X509 *x = leaf_of(pem, len);
    int match = x ? EVP_PKEY_eq(X509_get0_pubkey(x), key) : 0;
    X509_free(x);
    if (match != 1) {
        snprintf(err, errlen, "the certificate's public key is not our key");
        return -1;
    }
    cert_info info;
    if (certinfo_parse(pem, len, &info, err, errlen) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < names->count && rc == 0; i++) {
        if (!has_name(&info, names->names[i])) {
            snprintf(err, errlen, "the certificate does not name %s", names->names[i]);
            rc = -1;
        }
    }
    certinfo_free(&info);
    return rc;
}

unsigned char *certinfo_leaf_der(const char *pem, size_t len, size_t *derlen)
{
    X509 *x = leaf_of(pem, len);
    unsigned char *der = NULL;
    int n = x ? i2d_X509(x, &der) : 0;
    X509_free(x);
    if (n <= 0)
        return NULL;
    *derlen = (size_t)n;
    return der;
}
