/* libFuzzer target for what certd reads from a CA (replies, problem documents, Retry-After,
 * RFC 3339, base64url, JWS, chains): any bytes give a clean error, never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certd/certd.h"
#include "shared/log.h"

static EVP_PKEY *fixed_key(void)
{
    static EVP_PKEY *key;
    if (!key)
        key = key_generate(KEY_EC256);
    return key;
}

static void fuzz_reply(const char *text, size_t len, const char *ctype)
{
    fetch_response h;
    memset(&h, 0, sizeof(h));
    buf_init(&h.body, 1 << 20);
    buf_append(&h.body, text, len);
    buf_append(&h.body, "", 1);
    h.body.len--; /* NUL-terminated as fetch.c leaves it */
    h.status = 400;
    h.content_type = strdup(ctype);
    acme_reply r;
    if (acme_reply_take(&h, &r) == 0) {
        acme_log_problem("fuzz", &r);
        (void)certd_json_str(r.json, "status");
        (void)acme_retry_delay_ms(&r, 1000);
    }
    acme_reply_free(&r);
    fetch_response_free(&h);
}

static void fuzz_chain(const char *text, size_t len)
{
    cert_info info;
    char err[256];
    if (certinfo_parse(text, len, &info, err, sizeof(err)) == 0)
        certinfo_free(&info);
    char *names[] = {"example.com"};
    certd_names n = {names, 1, false};
    (void)certinfo_check(text, len, fixed_key(), &n, err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        log_init("fuzz", HLOG_ERROR, false);
        log_set_file("/dev/null");
        quiet = true;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_reply(text, size, "application/problem+json");
    fuzz_reply(text, size, "application/pem-certificate-chain");
    int64_t d;
    time_t t;
    (void)schedule_retry_after(text, 0, &d);
    (void)schedule_parse_rfc3339(text, &t);
    (void)challenge_token_ok(text);
    unsigned char *out;
    size_t outlen;
    if (b64url_decode(text, size, &out, &outlen) == 0)
        free(out);
    char *payload = NULL;
    if (jws_verify(fixed_key(), text, &payload) == 0)
        free(payload);
    fuzz_chain(text, size);
    free(text);
    return 0;
}
