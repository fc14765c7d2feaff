/* Private keys: the types certd issues for (ECDSA P-256/P-384, RSA 2048-4096), generated with
 * OpenSSL 3's EVP API and kept as PKCS#8 PEM. */
#include "certd/certd.h"

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

static const char *const key_type_names[] = {
    [KEY_EC256] = "ec256",     [KEY_EC384] = "ec384",     [KEY_RSA2048] = "rsa2048",
    [KEY_RSA3072] = "rsa3072", [KEY_RSA4096] = "rsa4096",
};

int key_type_parse(const char *name, config_key_type *type)
{
    for (size_t i = 0; i < sizeof(key_type_names) / sizeof(key_type_names[0]); i++) {
        if (strcmp(name, key_type_names[i]) == 0) {
            *type = (config_key_type)i;
            return 0;
        }
    }
    return -1;
}

const char *key_type_name(config_key_type type)
{
    if ((size_t)type < sizeof(key_type_names) / sizeof(key_type_names[0]))
        return key_type_names[type];
    return "unknown";
}

int key_type_of(EVP_PKEY *key, config_key_type *type)
{
    int bits = EVP_PKEY_get_bits(key);
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
        if (bits == 256 || bits == 384) {
            *type = bits == 256 ? KEY_EC256 : KEY_EC384;
            return 0;
        }
        return -1;
    case EVP_PKEY_RSA:
        if (bits == 2048 || bits == 3072 || bits == 4096) {
            *type = bits == 2048 ? KEY_RSA2048 : bits == 3072 ? KEY_RSA3072 : KEY_RSA4096;
            return 0;
        }
        return -1;
    default:
        return -1;
    }
}

EVP_PKEY *key_generate(config_key_type type)
{
    switch (type) {
    case KEY_EC256:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    case KEY_EC384:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    case KEY_RSA2048:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    case KEY_RSA3072:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    case KEY_RSA4096:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
    }
    return NULL;
}

char *key_to_pem(EVP_PKEY *key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        out = n > 0 ? strndup(data, (size_t)n) : NULL;
        if (out)
            *len = (size_t)n;
    }
    BIO_free(bio);
    return out;
}

EVP_PKEY *key_from_pem(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return key;
}
