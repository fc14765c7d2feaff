/* Unit tests for the sealing of secrets stored in etcd: a round trip, and every way a sealed
 * value must fail to open (another key, another etcd key as additional data, a flipped bit, a
 * plain value where sealed ones are expected, a short or unreadable key file). */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certd/certd.h"
#include "tests/unit/check.h"

static int key_file(const char *dir, const char *name, const char *content, unsigned char *key)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(content, f);
    fclose(f);
    chmod(path, 0600); /* a secret: refused when group or others may read it */
    return seal_key_load(path, key);
}

static void test_round_trip(const unsigned char *k1, const unsigned char *k2)
{
    const char *pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n";
    char *sealed = seal_text(k1, "/hearth/certs/a.example", pem, strlen(pem));
    CHECK(sealed && strncmp(sealed, "seal1:", 6) == 0 && !strstr(sealed, "PRIVATE"));
    size_t len = 0;
    unsigned char *back = seal_open(k1, "/hearth/certs/a.example", sealed, &len);
    CHECK(back && len == strlen(pem) && memcmp(back, pem, len) == 0 && back[len] == '\0');
    free(back);
    /* the same text sealed twice differs (a fresh nonce each time) */
    char *again = seal_text(k1, "/hearth/certs/a.example", pem, strlen(pem));
    CHECK(again && strcmp(again, sealed) != 0);
    free(again);
    CHECK(seal_open(k2, "/hearth/certs/a.example", sealed, &len) == NULL);
    CHECK(seal_open(k1, "/hearth/certs/b.example", sealed, &len) == NULL);
    CHECK(seal_open(NULL, "/hearth/certs/a.example", sealed, &len) == NULL);
    size_t n = strlen(sealed);
    sealed[n - 3] = sealed[n - 3] == 'A' ? 'B' : 'A';
    CHECK(seal_open(k1, "/hearth/certs/a.example", sealed, &len) == NULL);
    sealed[10] = '\0';
    CHECK(seal_open(k1, "/hearth/certs/a.example", sealed, &len) == NULL);
    CHECK(seal_open(k1, "/hearth/certs/a.example", "garbage", &len) == NULL);
    free(sealed);
}

static void test_plaintext(const unsigned char *k1)
{
    char *plain = seal_text(NULL, "/hearth/x", "secret", 6);
    size_t len = 0;
    CHECK(plain && strcmp(plain, "plain:secret") == 0);
    unsigned char *back = seal_open(NULL, "/hearth/x", plain, &len);
    CHECK(back && len == 6 && strcmp((char *)back, "secret") == 0);
    free(back);
    /* a host with a key never takes a value somebody stored in the clear */
    CHECK(seal_open(k1, "/hearth/x", plain, &len) == NULL);
    free(plain);
}

int main(void)
{
    char dir[] = "/tmp/seal.XXXXXX";
    unsigned char k1[SEAL_KEY_LEN], k2[SEAL_KEY_LEN], k3[SEAL_KEY_LEN];
    CHECK(mkdtemp(dir) != NULL);
    CHECK(key_file(dir, "k1", "0123456789abcdef0123456789abcdef", k1) == 0);
    CHECK(key_file(dir, "k2", "0123456789abcdef0123456789abcdeF", k2) == 0);
    CHECK(key_file(dir, "k1again", "0123456789abcdef0123456789abcdef", k3) == 0);
    CHECK(memcmp(k1, k3, SEAL_KEY_LEN) == 0 && memcmp(k1, k2, SEAL_KEY_LEN) != 0);
    CHECK(key_file(dir, "short", "too short", k3) < 0);
    char open_to_all[600];
    snprintf(open_to_all, sizeof(open_to_all), "%s/k1", dir);
    chmod(open_to_all, 0644);
    CHECK(seal_key_load(open_to_all, k3) < 0);
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    CHECK(seal_key_load(missing, k3) < 0);
    test_round_trip(k1, k2);
    test_plaintext(k1);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("certd_seal");
}
