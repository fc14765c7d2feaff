/* The JSON of etcd's v3 gateway: keys and values are base64 (protobuf bytes), int64s are
 * decimal strings (JSON numbers lose precision past 2^53), and a key-value carries its
 * revisions. Everything read here comes from the network: malformed input is a false, never a
 * crash. */
#include "shared/etcd_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

char *etcd_base64(const void *data, size_t len)
{
    if (len > INT32_MAX / 2) /* EVP_EncodeBlock takes an int */
        return NULL;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* EVP_DecodeBlock decodes whole quanta and counts padding as zero bytes; the length it
 * returns is corrected here, and text that is not whole quanta is refused. */
int etcd_unbase64(const char *text, unsigned char **out, size_t *len)
{
    size_t n = strlen(text);
    if (n % 4 != 0 || n > INT32_MAX / 2)
        return -1;
    unsigned char *bytes = malloc(n / 4 * 3 + 1);
    if (!bytes)
        return -1;
    int got = n ? EVP_DecodeBlock(bytes, (const unsigned char *)text, (int)n) : 0;
    if (got < 0) {
        free(bytes);
        return -1;
    }
    size_t pad = (n >= 1 && text[n - 1] == '=') + (n >= 2 && text[n - 2] == '=');
    *len = (size_t)got - pad;
    bytes[*len] = '\0';
    *out = bytes;
    return 0;
}

json_t *etcd_json_bytes(const void *data, size_t len)
{
    char *b64 = etcd_base64(data, len);
    if (!b64)
        return NULL;
    json_t *s = json_string(b64);
    free(b64);
    return s;
}

json_t *etcd_json_prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    unsigned char *end = (unsigned char *)strndup(prefix, n);
    if (!end)
        return NULL;
    /* The smallest key past every key starting with prefix: drop trailing 0xff bytes (no byte
     * is above them), then count the last one up. */
    while (n > 0 && end[n - 1] == 0xff)
        n--;
    json_t *s;
    if (n == 0) {
        s = etcd_json_bytes("", 1); /* "\0": to the end of the key space */
    } else {
        end[n - 1]++;
        s = etcd_json_bytes(end, n);
    }
    free(end);
    return s;
}

bool etcd_json_int64(const json_t *obj, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(obj, name);
    *out = 0;
    if (!v)
        return true;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = x;
    return true;
}

json_t *etcd_json_int64_string(int64_t v)
{
    char s[24];
    snprintf(s, sizeof(s), "%" PRId64, v);
    return json_string(s);
}

/* A base64 field into bytes (absent: empty); false when it is not base64. */
static bool bytes_field(const json_t *j, const char *name, unsigned char **out, size_t *len)
{
    const json_t *v = json_object_get(j, name);
    if (v && !json_is_string(v))
        return false;
    return etcd_unbase64(v ? json_string_value(v) : "", out, len) == 0;
}

bool etcd_kv_from_json(const json_t *j, etcd_kv *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(j))
        return false;
    unsigned char *key = NULL;
    size_t key_len;
    bool ok = bytes_field(j, "key", &key, &key_len) && key_len > 0 &&
              strlen((char *)key) == key_len && /* hearth's keys are C strings */
              bytes_field(j, "value", &out->value, &out->value_len) &&
              etcd_json_int64(j, "create_revision", &out->create_revision) &&
              etcd_json_int64(j, "mod_revision", &out->mod_revision) &&
              etcd_json_int64(j, "version", &out->version) &&
              etcd_json_int64(j, "lease", &out->lease);
    out->key = (char *)key;
    if (!ok)
        etcd_kv_free(out);
    return ok;
}

bool etcd_header_revision(const json_t *answer, int64_t *revision)
{
    return etcd_json_int64(json_object_get(answer, "header"), "revision", revision);
}
