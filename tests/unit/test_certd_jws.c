/* Unit tests for certd's JWS layer: base64url, JWK thumbprints (RFC 7638), signatures checked
 * against RFC 7515's ES256 example and round trips for ES256/ES384, EAB's HS256. */
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <stdlib.h>

#include "certd/certd.h"
#include "tests/unit/check.h"

/* RFC 7515 appendix A.3's P-256 key. */
static const char *const A3_X = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char *const A3_Y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
static const char *const A3_D = "jpsQnnGQmL-YBIffH1136cLe0i3B8wO-vJmj3ogBBQk";

static EVP_PKEY *a3_key(void)
{
    unsigned char *x, *y, *d, pub[65];
    size_t xl, yl, dl;
    if (b64url_decode(A3_X, strlen(A3_X), &x, &xl) || b64url_decode(A3_Y, strlen(A3_Y), &y, &yl) ||
        b64url_decode(A3_D, strlen(A3_D), &d, &dl) || xl != 32 || yl != 32)
        return NULL;
    pub[0] = 4;
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    BIGNUM *priv = BN_bin2bn(d, (int)dl, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub));
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    if (EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) != 1)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(priv);
    free(x), free(y), free(d);
    return key;
}

static void test_b64url(void)
{
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *e = b64url_encode((const unsigned char *)v[i].in, strlen(v[i].in));
        CHECK_STR(e, v[i].out);
        unsigned char *d;
        size_t dl;
        CHECK(b64url_decode(e, strlen(e), &d, &dl) == 0 && dl == strlen(v[i].in) &&
              memcmp(d, v[i].in, dl) == 0);
        free(d);
        free(e);
    }
    unsigned char *d = NULL;
    size_t dl;
    CHECK(b64url_decode("Zm9v+", 5, &d, &dl) < 0); /* '+' is not base64url */
    CHECK(b64url_decode("Z", 1, &d, &dl) < 0);     /* impossible length */
    CHECK(b64url_decode("Zm/v", 4, &d, &dl) < 0);
    CHECK(b64url_decode("Zm8=", 4, &d, &dl) == 0 && dl == 2); /* padding tolerated */
    free(d);
}

static void test_jwk_and_thumbprint(EVP_PKEY *key)
{
    json_t *jwk = jws_jwk(key);
    CHECK_STR(certd_json_str(jwk, "kty"), "EC");
    CHECK_STR(certd_json_str(jwk, "crv"), "P-256");
    CHECK_STR(certd_json_str(jwk, "x"), A3_X);
    CHECK_STR(certd_json_str(jwk, "y"), A3_Y);
    CHECK(json_object_get(jwk, "d") == NULL); /* never the private part */
    json_decref(jwk);
    char *t = jws_thumbprint(key);
    CHECK_STR(t, "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
    free(t);
    CHECK_STR(jws_alg(key), "ES256");
}

/* RFC 7515 A.3.1's JWS must verify with A.3's key; a changed byte must not. */
static void test_rfc7515_example(EVP_PKEY *key)
{
    const char *jws =
        "{\"protected\":\"eyJhbGciOiJFUzI1NiJ9\",\"payload\":\"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEz"
        "MDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\",\"signature\":\"DtEh"
        "U3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q\"}";
    char *payload = NULL;
    CHECK(jws_verify(key, jws, &payload) == 0);
    CHECK(payload && strncmp(payload, "{\"iss\":\"joe\"", 12) == 0);
    free(payload);
    char *bad = strdup(jws);
    bad[strlen(bad) - 5] = bad[strlen(bad) - 5] == 'A' ? 'B' : 'A';
    CHECK(jws_verify(key, bad, NULL) < 0);
    free(bad);
    CHECK(jws_verify(key, "{\"protected\":1}", NULL) < 0);
    CHECK(jws_verify(key, "not json", NULL) < 0);
}

/* jws_sign's object as it goes on the wire, which is what jws_verify reads. */
static char *sign_text(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                       const char *payload)
{
    json_t *o = jws_sign(key, kid, nonce, url, payload);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

static json_t *header_of(const char *jws)
{
    json_t *o = json_loads(jws, 0, NULL);
    const char *p = certd_json_str(o, "protected");
    unsigned char *h = NULL;
    size_t hl = 0;
    json_t *hdr = p && b64url_decode(p, strlen(p), &h, &hl) == 0
                      ? json_loadb((const char *)h, hl, 0, NULL)
                      : NULL;
    free(h);
    json_decref(o);
    return hdr;
}

static void test_sign_roundtrip(config_key_type type, const char *alg)
{
    EVP_PKEY *key = key_generate(type), *other = key_generate(type);
    char *jws = sign_text(key, NULL, "nonce-1", "https://ca/new-acct", "{\"a\":1}");
    char *payload = NULL;
    CHECK(jws && jws_verify(key, jws, &payload) == 0);
    CHECK(payload && strcmp(payload, "{\"a\":1}") == 0);
    CHECK(jws_verify(other, jws, NULL) < 0);
    json_t *h = header_of(jws);
    CHECK_STR(certd_json_str(h, "alg"), alg);
    CHECK_STR(certd_json_str(h, "nonce"), "nonce-1");
    CHECK_STR(certd_json_str(h, "url"), "https://ca/new-acct");
    CHECK(json_is_object(json_object_get(h, "jwk")) && !json_object_get(h, "kid"));
    json_decref(h);
    free(payload);
    free(jws);
    /* with a kid: no jwk; POST-as-GET: empty payload; no nonce: no nonce member */
    jws = sign_text(key, "https://ca/acct/1", NULL, "https://ca/order/1", NULL);
    h = header_of(jws);
    CHECK_STR(certd_json_str(h, "kid"), "https://ca/acct/1");
    CHECK(!json_object_get(h, "jwk") && !json_object_get(h, "nonce"));
    json_t *o = json_loads(jws, 0, NULL);
    CHECK_STR(certd_json_str(o, "payload"), "");
    CHECK(jws_verify(key, jws, NULL) == 0);
    json_decref(o);
    json_decref(h);
    free(jws);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void test_sig_conversion(void)
{
    unsigned char raw[64];
    for (int i = 0; i < 64; i++)
        raw[i] = (unsigned char)(i == 0 || i == 32 ? 0 : i); /* leading zeros must survive */
    size_t derlen, rawlen;
    unsigned char *der = jws_sig_raw_to_der(raw, sizeof(raw), &derlen);
    unsigned char *back = der ? jws_sig_der_to_raw(der, derlen, 32, &rawlen) : NULL;
    CHECK(back && rawlen == 64 && memcmp(raw, back, 64) == 0);
    CHECK(jws_sig_raw_to_der(raw, 63, &derlen) == NULL);
    CHECK(jws_sig_der_to_raw((const unsigned char *)"\x30\x02", 2, 32, &rawlen) == NULL);
    OPENSSL_free(der);
    free(back);
}

static void test_eab(EVP_PKEY *key)
{
    json_t *eab = jws_eab("kid-1", "c2VjcmV0", key, "https://ca/new-acct");
    CHECK(eab != NULL);
    const char *p = certd_json_str(eab, "protected"), *pl = certd_json_str(eab, "payload");
    const char *sig = certd_json_str(eab, "signature");
    char input[1024];
    snprintf(input, sizeof(input), "%s.%s", p, pl);
    unsigned char mac[32];
    size_t maclen = 0;
    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, "secret", 6, (unsigned char *)input,
              strlen(input), mac, sizeof(mac), &maclen);
    char *want = b64url_encode(mac, maclen);
    CHECK_STR(sig, want);
    free(want);
    unsigned char *h;
    size_t hl;
    CHECK(b64url_decode(p, strlen(p), &h, &hl) == 0);
    json_t *hdr = json_loadb((char *)h, hl, 0, NULL);
    CHECK_STR(certd_json_str(hdr, "alg"), "HS256");
    CHECK_STR(certd_json_str(hdr, "kid"), "kid-1");
    CHECK(!json_object_get(hdr, "nonce"));
    json_decref(hdr);
    free(h);
    json_decref(eab);
    CHECK(jws_eab("kid-1", "not base64!", key, "https://ca/x") == NULL);
}

int main(void)
{
    test_b64url();
    EVP_PKEY *key = a3_key();
    CHECK(key != NULL);
    if (key) {
        test_jwk_and_thumbprint(key);
        test_rfc7515_example(key);
        test_eab(key);
    }
    EVP_PKEY_free(key);
    test_sign_roundtrip(KEY_EC256, "ES256");
    test_sign_roundtrip(KEY_EC384, "ES384");
    test_sig_conversion();
    EVP_PKEY *rsa = key_generate(KEY_RSA2048);
    CHECK(jws_alg(rsa) == NULL && jws_sign(rsa, NULL, "n", "u", "") == NULL);
    EVP_PKEY_free(rsa);
    return check_summary("certd_jws");
}
