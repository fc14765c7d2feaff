/* JSON Web Signatures as ACME uses them (RFC 7515 flattened form, RFC 7518 algorithms): the
 * account key signs every request; EAB adds an HMAC-signed JWS inside newAccount. */
#include "certd/certd.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *b64url_encode(const unsigned char *data, size_t len)
{
    char *out = malloc(len / 3 * 4 + 5);
    if (!out)
        return NULL;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
        out[o++] = b64url_chars[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)data[i] << 16;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

static int b64url_value(char c)
{
    const char *p = c ? strchr(b64url_chars, c) : NULL;
    return p ? (int)(p - b64url_chars) : -1;
}

/* Unpadded base64url only; a trailing '=' padding is tolerated since some CAs send it. */
int b64url_decode(const char *text, size_t len, unsigned char **out, size_t *outlen)
{
    while (len > 0 && text[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    unsigned char *o = malloc(len / 4 * 3 + 3);
    if (!o)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(text[i]);
        if (v < 0) {
            free(o);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out = o;
    *outlen = n;
    return 0;
}

static char *b64url_str(const char *s)
{
    return b64url_encode((const unsigned char *)s, strlen(s));
}

/* P-256 -> 32, P-384 -> 48; 0 for anything we do not sign with. */
static size_t ec_field_bytes(EVP_PKEY *key)
{
    char group[64];
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL))
        return 0;
    if (strcmp(group, "prime256v1") == 0)
        return 32;
    if (strcmp(group, "secp384r1") == 0)
        return 48;
    return 0;
}

const char *jws_alg(EVP_PKEY *key)
{
    switch (ec_field_bytes(key)) {
    case 32:
        return "ES256";
    case 48:
        return "ES384";
    default:
        return NULL;
    }
}

static char *bn_param_b64(EVP_PKEY *key, const char *param, size_t width)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(key, param, &bn))
        return NULL;
    unsigned char bytes[66];
    char *out = NULL;
    if (width <= sizeof(bytes) && BN_bn2binpad(bn, bytes, (int)width) == (int)width)
        out = b64url_encode(bytes, width);
    BN_free(bn);
    return out;
}

json_t *jws_jwk(EVP_PKEY *key)
{
    size_t width = ec_field_bytes(key);
    if (!width)
        return NULL;
    char *x = bn_param_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, width);
    char *y = bn_param_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, width);
    json_t *jwk = NULL;
    if (x && y)
        jwk = json_pack("{s:s, s:s, s:s, s:s}", "crv", width == 32 ? "P-256" : "P-384", "kty", "EC",
                        "x", x, "y", y);
    free(x);
    free(y);
    return jwk;
}

char *jws_thumbprint(EVP_PKEY *key)
{
    json_t *jwk = jws_jwk(key);
    if (!jwk)
        return NULL;
    /* RFC 7638: members in lexicographic order, no whitespace. */
    char *canon = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(jwk);
    if (!canon)
        return NULL;
    unsigned char md[32];
    unsigned int mdlen = 0;
    char *out = NULL;
    if (EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL))
        out = b64url_encode(md, mdlen);
    free(canon);
    return out;
}

unsigned char *jws_sig_der_to_raw(const unsigned char *der, size_t derlen, size_t half,
                                  size_t *rawlen)
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (!sig)
        return NULL;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    unsigned char *raw = malloc(2 * half);
    if (raw && (BN_bn2binpad(r, raw, (int)half) != (int)half ||
                BN_bn2binpad(s, raw + half, (int)half) != (int)half)) {
        free(raw);
        raw = NULL;
    }
    ECDSA_SIG_free(sig);
    *rawlen = 2 * half;
    return raw;
}

unsigned char *jws_sig_raw_to_der(const unsigned char *raw, size_t rawlen, size_t *derlen)
{
    if (rawlen == 0 || rawlen % 2)
        return NULL;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(rawlen / 2), NULL);
    BIGNUM *s = BN_bin2bn(raw + rawlen / 2, (int)(rawlen / 2), NULL);
    unsigned char *der = NULL;
    if (sig && r && s && ECDSA_SIG_set0(sig, r, s)) {
        r = s = NULL; /* owned by sig now */
        int n = i2d_ECDSA_SIG(sig, &der);
        if (n <= 0)
            der = NULL;
        else
            *derlen = (size_t)n;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return der;
}

static const EVP_MD *alg_md(size_t width)
{
    return width == 48 ? EVP_sha384() : EVP_sha256();
}

/* Raw ECDSA signature over "protected.payload", base64url-encoded. */
static char *sign_input(EVP_PKEY *key, const char *input)
{
    size_t width = ec_field_bytes(key);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[160];
    size_t derlen = sizeof(der);
    char *out = NULL;
    if (md && width && EVP_DigestSignInit(md, NULL, alg_md(width), NULL, key) == 1 &&
        EVP_DigestSign(md, der, &derlen, (const unsigned char *)input, strlen(input)) == 1) {
        size_t rawlen;
        unsigned char *raw = jws_sig_der_to_raw(der, derlen, width, &rawlen);
        if (raw)
            out = b64url_encode(raw, rawlen);
        free(raw);
    }
    EVP_MD_CTX_free(md);
    return out;
}

/* {"protected": p64, "payload": pl64, "signature": sig}: RFC 7515's flattened JSON form. */
static json_t *flattened(const char *p64, const char *pl64, const char *sig)
{
    return json_pack("{s:s, s:s, s:s}", "protected", p64, "payload", pl64, "signature", sig);
}

static char *join3(const char *a, const char *sep, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), ls = strlen(sep);
    char *s = malloc(la + ls + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, sep, ls);
        memcpy(s + la + ls, b, lb + 1);
    }
    return s;
}

static json_t *protected_header(EVP_PKEY *key, const char *kid, const char *nonce, const char *url)
{
    const char *alg = jws_alg(key);
    if (!alg)
        return NULL;
    json_t *h = json_pack("{s:s, s:s}", "alg", alg, "url", url);
    if (!h)
        return NULL;
    if (nonce)
        json_object_set_new(h, "nonce", json_string(nonce));
    if (kid)
        json_object_set_new(h, "kid", json_string(kid));
    else
        json_object_set_new(h, "jwk", jws_jwk(key));
    return h;
}

json_t *jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                 const char *payload)
{
    json_t *h = protected_header(key, kid, nonce, url);
    char *hs = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!hs)
        return NULL;
    char *p64 = b64url_str(hs);
    char *pl64 = b64url_str(payload ? payload : "");
    char *input = p64 && pl64 ? join3(p64, ".", pl64) : NULL;
    char *sig = input ? sign_input(key, input) : NULL;
    json_t *out = sig ? flattened(p64, pl64, sig) : NULL;
    free(hs);
    free(p64);
    free(pl64);
    free(input);
    free(sig);
    return out;
}

json_t *jws_eab(const char *eab_kid, const char *hmac_key_b64url, EVP_PKEY *account_key,
                const char *url)
{
    unsigned char *mac_key = NULL;
    size_t mac_len = 0;
    if (b64url_decode(hmac_key_b64url, strlen(hmac_key_b64url), &mac_key, &mac_len) < 0)
        return NULL;
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", eab_kid, "url", url);
    json_t *jwk = jws_jwk(account_key);
    char *hs = h ? json_dumps(h, JSON_COMPACT) : NULL;
    char *js = jwk ? json_dumps(jwk, JSON_COMPACT) : NULL;
    char *p64 = hs ? b64url_str(hs) : NULL, *pl64 = js ? b64url_str(js) : NULL;
    char *input = p64 && pl64 ? join3(p64, ".", pl64) : NULL;
    json_t *out = NULL;
    unsigned char mac[32];
    size_t maclen = 0;
    if (input &&
        EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, mac_key, mac_len,
                  (const unsigned char *)input, strlen(input), mac, sizeof(mac), &maclen)) {
        char *sig = b64url_encode(mac, maclen);
        if (sig)
            out = flattened(p64, pl64, sig);
        free(sig);
    }
    OPENSSL_cleanse(mac_key, mac_len);
    free(mac_key);
    json_decref(h);
    json_decref(jwk);
    free(hs), free(js), free(p64), free(pl64), free(input);
    return out;
}

static int verify_input(EVP_PKEY *key, const char *input, const unsigned char *raw, size_t rawlen)
{
    size_t width = ec_field_bytes(key), derlen = 0;
    if (!width || rawlen != 2 * width)
        return -1;
    unsigned char *der = jws_sig_raw_to_der(raw, rawlen, &derlen);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = der && md && EVP_DigestVerifyInit(md, NULL, alg_md(width), NULL, key) == 1 &&
             EVP_DigestVerify(md, der, derlen, (const unsigned char *)input, strlen(input)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

int jws_verify(EVP_PKEY *key, const char *jws, char **payload)
{
    json_t *o = json_loads(jws, 0, NULL);
    const char *p64 = certd_json_str(o, "protected"), *pl64 = certd_json_str(o, "payload");
    const char *s64 = certd_json_str(o, "signature");
    int rc = -1;
    unsigned char *raw = NULL, *hdr = NULL, *pl = NULL;
    size_t rawlen = 0, hdrlen = 0, pllen = 0;
    char *input = NULL;
    if (!p64 || !pl64 || !s64 || b64url_decode(s64, strlen(s64), &raw, &rawlen) < 0 ||
        b64url_decode(p64, strlen(p64), &hdr, &hdrlen) < 0 ||
        b64url_decode(pl64, strlen(pl64), &pl, &pllen) < 0)
        goto out;
    json_t *h = json_loadb((const char *)hdr, hdrlen, 0, NULL);
    const char *alg = certd_json_str(h, "alg");
    bool alg_ok = alg && jws_alg(key) && strcmp(alg, jws_alg(key)) == 0;
    json_decref(h);
    input = join3(p64, ".", pl64);
    if (!alg_ok || !input || verify_input(key, input, raw, rawlen) < 0)
        goto out;
    if (payload) {
        *payload = strndup((const char *)pl, pllen);
        if (!*payload)
            goto out;
    }
    rc = 0;
out:
    json_decref(o);
    free(raw), free(hdr), free(pl), free(input);
    return rc;
}
