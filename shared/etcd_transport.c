/* How the etcd client reaches etcd: one POST to one endpoint on the client's curl handle,
 * driven through a multi handle so that a long transfer (a watch) looks at its stop flag every
 * 100 ms; and a call of the gateway, which tries the endpoints in turn, authenticates, and
 * reads etcd's errors. */
#include "shared/etcd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"

#define STOP_POLL_MS 100 /* a stop flag is looked at this often */

/* An etcd_call's attempt at one endpoint that should go on to the next one. */
#define TRY_NEXT 100

void etcd_set_error(etcd_client *c, const char *fmt, ...)
{
    char text[sizeof(c->error)]; /* fmt's arguments may be c->error itself */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    memcpy(c->error, text, sizeof(text));
}

void etcd_failure_note(etcd_failures *f, const etcd_client *c)
{
    size_t used = strlen(f->text);
    snprintf(f->text + used, sizeof(f->text) - used, "%s%s", f->count ? "; " : "", c->error);
    f->count++;
}

void etcd_failure_report(etcd_client *c, const etcd_failures *f)
{
    if (f->count > 1)
        etcd_set_error(c, "no etcd endpoint could serve: %s", f->text);
}

/* The CURLMSG_DONE result of the transfer, once it has ended. */
static bool transfer_done(etcd_client *c, CURLcode *rc)
{
    int left;
    CURLMsg *m;
    bool done = false;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg == CURLMSG_DONE) {
            *rc = m->data.result;
            done = true;
        }
    }
    return done;
}

static CURLcode run_transfer(etcd_client *c, volatile bool *stop, bool *stopped)
{
    if (curl_multi_add_handle(c->multi, c->curl) != CURLM_OK)
        return CURLE_FAILED_INIT;
    CURLcode rc = CURLE_FAILED_INIT;
    for (;;) {
        int running = 0;
        if (curl_multi_perform(c->multi, &running) != CURLM_OK || transfer_done(c, &rc))
            break;
        if (running == 0)
            break; /* ended without a result: cannot happen, but must not spin */
        if (stop && *stop) {
            *stopped = true;
            break;
        }
        if (curl_multi_poll(c->multi, NULL, 0, STOP_POLL_MS, NULL) != CURLM_OK)
            break;
    }
    curl_multi_remove_handle(c->multi, c->curl);
    return rc;
}

typedef struct {
    etcd_sink sink;
    void *arg;
} sink_call;

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    sink_call *s = userp;
    size_t n = size * nmemb;
    return s->sink(s->arg, data, n) ? n : 0; /* 0: curl ends the transfer */
}

/* etcd's "hasleader" gRPC metadata (the gateway passes Grpc-Metadata-* headers on): a member
 * cut off from its cluster's leader then refuses at once with "no leader", which sends the
 * call to another endpoint, instead of timing out or, for a watch, serving a history that no
 * longer moves. The status of `hearth check --online` goes without it: it says so itself. */
static bool set_headers(etcd_client *c, bool require_leader)
{
    curl_slist_free_all(c->headers);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (c->headers && require_leader) {
        struct curl_slist *more = curl_slist_append(c->headers, "Grpc-Metadata-hasleader: true");
        if (!more)
            return false;
        c->headers = more;
    }
    if (c->headers && c->token) {
        char *line = NULL;
        if (asprintf(&line, "Authorization: %s", c->token) < 0)
            return false;
        struct curl_slist *more = curl_slist_append(c->headers, line);
        free(line);
        if (!more)
            return false;
        c->headers = more;
    }
    return c->headers != NULL;
}

static void set_tls(etcd_client *c)
{
    if (c->ca)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca);
    if (c->cert) {
        curl_easy_setopt(c->curl, CURLOPT_SSLCERT, c->cert);
        curl_easy_setopt(c->curl, CURLOPT_SSLKEY, c->key);
    }
}

static bool set_request(etcd_client *c, const char *url, bool require_leader, const char *body,
                        int64_t timeout_ms, sink_call *s)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* etcd is on the hosts' own network: an http_proxy meant for the outside must not
     * apply. */
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(c->timeout_ms < timeout_ms ? c->timeout_ms : timeout_ms));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_error);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "hearth/" HEARTH_VERSION);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    set_tls(c);
    if (!set_headers(c, require_leader))
        return false;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    return true;
}

etcd_sent etcd_post(etcd_client *c, size_t i, const char *path, const char *body,
                    int64_t timeout_ms, etcd_sink sink, void *arg, volatile bool *stop,
                    long *status)
{
    char *url = NULL;
    sink_call s = {sink, arg};
    c->curl_error[0] = '\0';
    if (asprintf(&url, "%s%s", c->endpoints.items[i], path) < 0) {
        snprintf(c->curl_error, sizeof(c->curl_error), "out of memory");
        return ETCD_SENT_BROKEN;
    }
    bool require_leader = strcmp(path, "/v3/maintenance/status") != 0;
    bool ready = set_request(c, url, require_leader, body, timeout_ms, &s);
    free(url);
    if (!ready) {
        snprintf(c->curl_error, sizeof(c->curl_error), "out of memory");
        return ETCD_SENT_BROKEN;
    }
    bool stopped = false;
    CURLcode rc = run_transfer(c, stop, &stopped);
    c->curl_result = rc;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
        return ETCD_SENT_DONE;
    }
    if (stopped)
        snprintf(c->curl_error, sizeof(c->curl_error), "stopped");
    else if (!c->curl_error[0])
        snprintf(c->curl_error, sizeof(c->curl_error), "%s", curl_easy_strerror(rc));
    /* Before the request's first byte went out (connecting, TLS handshake) nothing can have
     * been applied, whatever the call was. */
    curl_off_t pretransfer = 0;
    curl_easy_getinfo(c->curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    return pretransfer == 0 && !stopped ? ETCD_SENT_UNREACHABLE : ETCD_SENT_BROKEN;
}

/* ---- calls ---- */

typedef struct {
    buf body;
    bool too_big;
} collected;

static bool collect(void *arg, const char *data, size_t len)
{
    collected *k = arg;
    if (buf_append(&k->body, data, len) < 0) {
        k->too_big = true;
        return false;
    }
    return true;
}

/* The start of an answer that is not JSON (a proxy's page, the gateway's plain-text refusals)
 * for a message: its first line, control bytes and non-ASCII as '?'. */
static void printable(const buf *b, char *out, size_t size)
{
    size_t n = 0;
    const char *p = buf_head(b);
    for (size_t i = 0; i < buf_used(b) && p[i] != '\n' && n + 1 < size; i++)
        out[n++] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
    out[n] = '\0';
    if (n == 0)
        snprintf(out, size, "(empty)");
}

/* POSTs text to endpoint i and parses what came back: *answer is NULL when it was not JSON
 * (DONE), or on any other outcome; c->error says why. */
static etcd_sent post_json(etcd_client *c, size_t i, const char *path, const char *text,
                           json_t **answer, long *status)
{
    collected k = {.too_big = false};
    buf_init(&k.body, ETCD_MAX_BODY);
    *answer = NULL;
    *status = 0;
    etcd_sent sent = etcd_post(c, i, path, text, c->timeout_ms, collect, &k, NULL, status);
    const char *url = c->endpoints.items[i];
    if (k.too_big)
        etcd_set_error(c, "etcd at %s: its answer is larger than %u MiB", url, ETCD_MAX_BODY >> 20);
    else if (sent != ETCD_SENT_DONE)
        etcd_set_error(c, "etcd at %s: %s", url, c->curl_error);
    if (sent == ETCD_SENT_DONE) {
        *answer = json_loadb(buf_head(&k.body), buf_used(&k.body), 0, NULL);
        if (!json_is_object(*answer)) {
            json_decref(*answer), *answer = NULL;
            char text[160];
            printable(&k.body, text, sizeof(text));
            etcd_set_error(c, "etcd at %s: HTTP %ld, not JSON: %s", url, *status, text);
        }
    }
    buf_free(&k.body);
    return sent;
}

int etcd_answer_error(const json_t *answer, const char **message)
{
    const json_t *error = json_object_get(answer, "error");
    *message = NULL;
    if (!error)
        return 0;
    if (json_is_object(error)) { /* a stream's error */
        *message = json_string_value(json_object_get(error, "message"));
        answer = error;
    } else {
        *message = json_string_value(json_object_get(answer, "message"));
        if (!*message)
            *message = json_string_value(error);
    }
    if (!*message)
        *message = "(no message)";
    json_int_t code = json_integer_value(json_object_get(answer, "code"));
    if (!code)
        code = json_integer_value(json_object_get(answer, "grpc_code"));
    return code ? (int)code : -1;
}

bool etcd_token_invalid(int code, const char *message)
{
    /* "invalid auth token" (expired too: etcd forgets expired tokens) is Unauthenticated;
     * a token issued before the auth store changed is "revision of auth store is old". */
    return code == GRPC_UNAUTHENTICATED || (message && (strstr(message, "invalid auth token") ||
                                                        strstr(message, "auth store is old")));
}

/* The body's text (consumed), or NULL with the error set. */
static char *body_text(etcd_client *c, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        etcd_set_error(c, "out of memory");
    return text;
}

etcd_sent etcd_auth_at(etcd_client *c, size_t i)
{
    if (!c->username || c->token)
        return ETCD_SENT_DONE;
    char *text =
        body_text(c, json_pack("{s:s, s:s}", "name", c->username, "password", c->password));
    if (!text)
        return ETCD_SENT_BROKEN;
    json_t *answer;
    long status;
    etcd_sent sent = post_json(c, i, "/v3/auth/authenticate", text, &answer, &status);
    explicit_bzero(text, strlen(text)); /* it holds the password */
    free(text);
    if (sent != ETCD_SENT_DONE) /* authenticating twice does no harm: try the next one */
        return ETCD_SENT_UNREACHABLE;
    const char *message, *token = json_string_value(json_object_get(answer, "token"));
    int code = etcd_answer_error(answer, &message);
    if (token && !code)
        c->token = strdup(token);
    else if (code == GRPC_UNAVAILABLE)
        etcd_set_error(c, "etcd at %s: %s", c->endpoints.items[i], message);
    else if (answer)
        etcd_set_error(c, "etcd at %s: the credentials of user %s were refused: %s",
                       c->endpoints.items[i], c->username, message ? message : "no token");
    json_decref(answer);
    if (code == GRPC_UNAVAILABLE) /* this member cannot serve now (no leader) */
        return ETCD_SENT_UNREACHABLE;
    if (token && !code && !c->token)
        etcd_set_error(c, "out of memory");
    return c->token ? ETCD_SENT_DONE : ETCD_SENT_BROKEN;
}

/* What to make of an answer that came: an error of etcd's may be worth another endpoint (the
 * member has no leader) or a new token. */
static int judge_answer(etcd_client *c, size_t i, etcd_kind kind, json_t *answer, long status,
                        bool *renew_token)
{
    const char *message;
    int code = etcd_answer_error(answer, &message);
    if (code == 0 && status == 200)
        return 0;
    const char *url = c->endpoints.items[i];
    if (code == 0)
        etcd_set_error(c, "etcd at %s: HTTP %ld", url, status);
    else
        etcd_set_error(c, "etcd at %s: %s", url, message);
    if (etcd_token_invalid(code, message) && c->username) {
        *renew_token = true;
        return ETCD_ERR;
    }
    /* "no leader" is refused before anything is proposed; other Unavailable errors (request
     * timed out) may have been applied, so only a read goes elsewhere with them */
    if (code == GRPC_UNAVAILABLE && (kind == ETCD_READ || strstr(message, "no leader")))
        return TRY_NEXT;
    return code == GRPC_NOT_FOUND ? ETCD_NOT_FOUND : ETCD_ERR;
}

/* One attempt at endpoint i: 0, ETCD_NOT_FOUND, ETCD_ERR or TRY_NEXT. */
static int call_at(etcd_client *c, size_t i, const char *path, const char *text, etcd_kind kind,
                   json_t **answer, bool *reauthed)
{
    etcd_sent auth = etcd_auth_at(c, i);
    if (auth != ETCD_SENT_DONE)
        return auth == ETCD_SENT_UNREACHABLE ? TRY_NEXT : ETCD_ERR;
    long status;
    etcd_sent sent = post_json(c, i, path, text, answer, &status);
    if (sent == ETCD_SENT_UNREACHABLE || (sent == ETCD_SENT_BROKEN && kind == ETCD_READ))
        return TRY_NEXT;
    if (sent == ETCD_SENT_BROKEN) {
        /* a write that may have been applied is not sent again, but the next call starts
         * with another endpoint */
        c->current = (i + 1) % c->endpoints.count;
        return ETCD_ERR;
    }
    if (!*answer)
        return ETCD_ERR;
    c->current = i;
    bool renew_token = false;
    int rc = judge_answer(c, i, kind, *answer, status, &renew_token);
    if (rc == 0)
        return 0;
    json_decref(*answer), *answer = NULL;
    if (renew_token && !*reauthed) {
        *reauthed = true;
        free(c->token), c->token = NULL;
        return call_at(c, i, path, text, kind, answer, reauthed);
    }
    return rc;
}

int etcd_call(etcd_client *c, const char *path, json_t *body, etcd_kind kind, json_t **answer)
{
    *answer = NULL;
    char *text = body_text(c, body);
    if (!text)
        return ETCD_ERR;
    size_t n = c->endpoints.count, first = c->current; /* an attempt may move c->current */
    bool reauthed = false;
    int rc = TRY_NEXT;
    etcd_failures failures = {.count = 0};
    for (size_t tried = 0; tried < n && rc == TRY_NEXT; tried++) {
        rc = call_at(c, (first + tried) % n, path, text, kind, answer, &reauthed);
        if (rc == TRY_NEXT)
            etcd_failure_note(&failures, c);
    }
    free(text);
    if (rc == TRY_NEXT) {
        etcd_failure_report(c, &failures);
        return ETCD_ERR;
    }
    return rc;
}

int etcd_call_one(etcd_client *c, size_t i, const char *path, json_t *body, json_t **answer)
{
    *answer = NULL;
    char *text = body_text(c, body);
    if (!text)
        return ETCD_ERR;
    bool reauthed = false;
    int rc = call_at(c, i, path, text, ETCD_READ, answer, &reauthed);
    free(text);
    return rc == TRY_NEXT ? ETCD_ERR : rc;
}
