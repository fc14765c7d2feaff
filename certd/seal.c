/* Secrets stored in etcd (private keys, ticket secrets) are sealed with AES-256-GCM under a key
 * derived from the cluster's secret_key_file, which every host holds and etcd never sees. The
 * etcd key a value is stored under is the additional data, so a sealed value moved to another
 * key (one certificate's private key swapped for another's) fails to open. */
#include "certd/certd.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "shared/cluster.h"
#include "shared/log.h"

#define SEAL_PREFIX "seal1:"
#define PLAIN_PREFIX "plain:"
#define NONCE_LEN 12
#define TAG_LEN 16

int seal_key_load(const char *path, unsigned char key[SEAL_KEY_LEN])
{
    size_t len = 0;
    char err[512];
    unsigned char *raw = cluster_read_secret_key(path, &len, err, sizeof(err));
    if (!raw) {
        log_error("%s", err);
        return -1;
    }
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, raw, len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, "hearth cluster seal v1", 22),
        OSSL_PARAM_construct_end()};
    int rc = ctx && EVP_KDF_derive(ctx, key, SEAL_KEY_LEN, params) == 1 ? 0 : -1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    OPENSSL_cleanse(raw, len);
    free(raw);
    return rc;
}

static int gcm(bool encrypt, const unsigned char *key, const unsigned char *nonce, const char *aad,
               const unsigned char *in, size_t len, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, encrypt) == 1 &&
              EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
              EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1;
    if (ok && !encrypt)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(ctx, out + n, &fin) == 1;
    if (ok && encrypt)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

char *seal_text(const unsigned char *key, const char *aad, const void *data, size_t len)
{
    if (!key) {
        char *out = malloc(sizeof(PLAIN_PREFIX) + len);
        if (out) {
            memcpy(out, PLAIN_PREFIX, sizeof(PLAIN_PREFIX) - 1);
            memcpy(out + sizeof(PLAIN_PREFIX) - 1, data, len);
            out[sizeof(PLAIN_PREFIX) - 1 + len] = '\0';
        }
        return out;
    }
    size_t total = NONCE_LEN + len + TAG_LEN;
    unsigned char *box = malloc(total);
    char *b64 = NULL, *out = NULL;
    if (box && RAND_bytes(box, NONCE_LEN) == 1 &&
        gcm(true, key, box, aad, data, len, box + NONCE_LEN, box + NONCE_LEN + len) == 0)
        b64 = b64url_encode(box, total);
    if (b64 && (out = malloc(sizeof(SEAL_PREFIX) + strlen(b64))) != NULL)
        sprintf(out, SEAL_PREFIX "%s", b64);
    if (box)
        OPENSSL_cleanse(box, total);
    free(box);
    free(b64);
    return out;
}

unsigned char *seal_open(const unsigned char *key, const char *aad, const char *text, size_t *len)
{
    size_t plen = strlen(PLAIN_PREFIX), slen = strlen(SEAL_PREFIX);
    if (strncmp(text, PLAIN_PREFIX, plen) == 0) {
        if (key) {
            log_error("%s: stored unencrypted, but this host has a secret_key_file: refused", aad);
            return NULL;
        }
        *len = strlen(text + plen);
        return (unsigned char *)strdup(text + plen);
    }
    unsigned char *box = NULL, *out = NULL;
    size_t blen = 0;
    if (strncmp(text, SEAL_PREFIX, slen) != 0 || !key ||
        b64url_decode(text + slen, strlen(text + slen), &box, &blen) < 0 ||
        blen < NONCE_LEN + TAG_LEN) {
        log_error("%s: %s", aad,
                  key ? "not a sealed value" : "sealed, but this host has no secret_key_file");
        free(box);
        return NULL;
    }
    size_t n = blen - NONCE_LEN - TAG_LEN;
    out = malloc(n + 1);
    if (out && gcm(false, key, box, aad, box + NONCE_LEN, n, out, box + NONCE_LEN + n) == 0) {
        out[n] = '\0';
        *len = n;
    } else {
        log_error("%s: cannot be opened with this host's secret_key_file (another key, or "
                  "altered)",
                  aad);
        if (out)
            OPENSSL_cleanse(out, n);
        free(out);
        out = NULL;
    }
    free(box);
    return out;
}
