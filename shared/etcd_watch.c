/* etcd_watch_prefix: the gateway's /v3/watch is one long response, a JSON object per line
 * (the created answer, batches of events, progress notifications, a cancelation); each complete
 * line is handled as it arrives and its events handed to the caller. The watch ends at its
 * timeout, at the stop flag or when the caller says so, and tells where to resume. */
#include "shared/etcd_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/buf.h"

typedef enum {
    WATCH_GOING,
    WATCH_CALLER_DONE, /* on_event returned nonzero */
    WATCH_COMPACTED,
    WATCH_AUTH,        /* the token was refused: authenticate again and watch again */
    WATCH_UNAVAILABLE, /* the member has no leader: another one may */
    WATCH_FAILED,
} watch_end;

typedef struct {
    etcd_client *c;
    const char *url;
    buf pending; /* the start of an object whose end has not come yet */
    etcd_watch_fn on_event;
    void *arg;
    bool created;
    bool from_now; /* start_rev 0: the created answer's revision says where "now" was */
    int64_t next_rev;
    watch_end end;
} watch_state;

static void watch_failed(watch_state *w, const char *why, const char *detail)
{
    etcd_set_error(w->c, "etcd at %s: %s%s", w->url, why, detail ? detail : "");
    w->end = WATCH_FAILED;
}

/* Hands each event of a batch to the caller, in order. */
static void deliver(watch_state *w, const json_t *events)
{
    size_t i;
    const json_t *e;
    json_array_foreach(events, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        etcd_event ev = {.deleted = type && strcmp(type, "DELETE") == 0};
        if (!etcd_kv_from_json(json_object_get(e, "kv"), &ev.kv)) {
            watch_failed(w, "a watch event is malformed", NULL);
            return;
        }
        int stop = w->on_event(w->arg, &ev);
        w->next_rev = ev.kv.mod_revision + 1;
        etcd_kv_free(&ev.kv);
        if (stop) {
            w->end = WATCH_CALLER_DONE;
            return;
        }
    }
}

/* {"result": {...}}: created, events, progress, or canceled (compacted, refused). */
static void handle_result(watch_state *w, const json_t *result)
{
    int64_t compact, revision;
    const json_t *events = json_object_get(result, "events");
    if (!json_is_object(result) || !etcd_json_int64(result, "compact_revision", &compact) ||
        !etcd_header_revision(result, &revision) || (events && !json_is_array(events))) {
        watch_failed(w, "a watch answer is malformed", NULL);
    } else if (compact > 0) {
        w->next_rev = compact; /* the oldest revision still kept */
        w->end = WATCH_COMPACTED;
    } else if (json_is_true(json_object_get(result, "canceled"))) {
        const char *reason = json_string_value(json_object_get(result, "cancel_reason"));
        watch_failed(w, "etcd canceled the watch: ", reason ? reason : "no reason given");
        if (reason && w->c->username &&
            (etcd_token_invalid(0, reason) || strstr(reason, "Unauthenticated")))
            w->end = WATCH_AUTH;
    } else if (json_is_true(json_object_get(result, "created"))) {
        w->created = true;
        if (w->from_now && revision > 0)
            w->next_rev = revision + 1;
    } else if (json_array_size(events) > 0) {
        deliver(w, events);
    } else if (w->created && revision >= w->next_rev) {
        w->next_rev = revision + 1; /* progress: every change up to revision was sent */
    }
}

static void handle_line(watch_state *w, const char *line, size_t len)
{
    json_t *j = json_loadb(line, len, 0, NULL);
    const char *message;
    int code = etcd_answer_error(j, &message);
    if (!json_is_object(j)) {
        watch_failed(w, "a watch answer is not a JSON object", NULL);
    } else if (code) {
        watch_failed(w, "", message);
        if (etcd_token_invalid(code, message) && w->c->username)
            w->end = WATCH_AUTH;
        else if (code == GRPC_UNAVAILABLE)
            w->end = WATCH_UNAVAILABLE;
    } else {
        handle_result(w, json_object_get(j, "result"));
    }
    json_decref(j);
}

/* Complete lines out of what has come; the rest waits for more. */
static void handle_lines(watch_state *w)
{
    while (w->end == WATCH_GOING) {
        char *head = buf_head(&w->pending);
        char *nl = memchr(head, '\n', buf_used(&w->pending));
        if (!nl)
            return;
        size_t len = (size_t)(nl - head);
        if (strspn(head, " \t\r") < len)
            handle_line(w, head, len);
        buf_consume(&w->pending, len + 1);
    }
}

static bool on_bytes(void *arg, const char *data, size_t len)
{
    watch_state *w = arg;
    buf_compact(&w->pending);
    if (buf_append(&w->pending, data, len) < 0) {
        watch_failed(w, "a watch answer is larger than the client's limit", NULL);
        return false;
    }
    handle_lines(w);
    return w->end == WATCH_GOING;
}

static char *watch_request(const char *prefix, int64_t start_rev)
{
    json_t *create = json_object();
    if (create) {
        json_object_set_new(create, "key", etcd_json_bytes(prefix, strlen(prefix)));
        json_object_set_new(create, "range_end", etcd_json_prefix_end(prefix));
        if (start_rev > 0)
            json_object_set_new(create, "start_revision", etcd_json_int64_string(start_rev));
    }
    json_t *body = json_pack("{s:o}", "create_request", create);
    char *text = body && json_object_size(create) >= 2 ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* What a watch's transfer at endpoint i came to: 0, ETCD_COMPACTED, ETCD_ERR, or the
 * transport's UNREACHABLE / WATCH_AUTH asking for another try. */
enum { TRY_NEXT_ENDPOINT = 100, TRY_NEW_TOKEN = 101 };

static int watch_outcome(watch_state *w, etcd_sent sent, long status, volatile bool *stop)
{
    etcd_client *c = w->c;
    if (w->end == WATCH_GOING && sent == ETCD_SENT_DONE && status != 200 &&
        buf_used(&w->pending) > 0) /* an error answer may lack the final newline */
        handle_line(w, buf_head(&w->pending), buf_used(&w->pending));
    switch (w->end) {
    case WATCH_CALLER_DONE:
        return 0;
    case WATCH_COMPACTED:
        etcd_set_error(c, "etcd at %s: the watch's start revision was compacted", w->url);
        return ETCD_COMPACTED;
    case WATCH_AUTH:
        return TRY_NEW_TOKEN;
    case WATCH_UNAVAILABLE:
        return w->created ? ETCD_ERR : TRY_NEXT_ENDPOINT;
    case WATCH_FAILED:
        return ETCD_ERR;
    case WATCH_GOING:
        break;
    }
    if (sent == ETCD_SENT_UNREACHABLE) {
        etcd_set_error(c, "etcd at %s: %s", w->url, c->curl_error);
        return TRY_NEXT_ENDPOINT;
    }
    if ((stop && *stop) || (w->created && c->curl_result == CURLE_OPERATION_TIMEDOUT))
        return 0; /* the ends the caller asked for */
    if (sent == ETCD_SENT_DONE)
        etcd_set_error(c, "etcd at %s ended the watch (HTTP %ld)", w->url, status);
    else if (!w->created)
        etcd_set_error(c, "etcd at %s did not start the watch: %s", w->url, c->curl_error);
    else
        etcd_set_error(c, "etcd at %s: the watch broke: %s", w->url, c->curl_error);
    return ETCD_ERR;
}

typedef struct {
    const char *prefix;
    int64_t deadline_ms;
    etcd_watch_fn on_event;
    void *arg;
    volatile bool *stop;
} watch_call;

/* One watch at endpoint i from *next_rev on. */
static int watch_at(etcd_client *c, size_t i, const watch_call *call, int64_t *next_rev)
{
    etcd_sent auth = etcd_auth_at(c, i);
    if (auth != ETCD_SENT_DONE)
        return auth == ETCD_SENT_UNREACHABLE ? TRY_NEXT_ENDPOINT : ETCD_ERR;
    int64_t left = call->deadline_ms - now_ms();
    char *text = watch_request(call->prefix, *next_rev);
    if (!text) {
        etcd_set_error(c, "out of memory");
        return ETCD_ERR;
    }
    watch_state w = {.c = c,
                     .url = c->endpoints.items[i],
                     .on_event = call->on_event,
                     .arg = call->arg,
                     .from_now = *next_rev == 0,
                     .next_rev = *next_rev};
    buf_init(&w.pending, ETCD_MAX_BODY);
    long status = 0;
    etcd_sent sent =
        etcd_post(c, i, "/v3/watch", text, left > 1 ? left : 1, on_bytes, &w, call->stop, &status);
    int rc = watch_outcome(&w, sent, status, call->stop);
    if (w.end == WATCH_UNAVAILABLE) /* the caller's next watch goes elsewhere */
        c->current = (i + 1) % c->endpoints.count;
    else if (rc != TRY_NEXT_ENDPOINT)
        c->current = i;
    *next_rev = w.next_rev;
    buf_free(&w.pending);
    free(text);
    return rc;
}

int etcd_watch_prefix(etcd_client *c, const char *prefix, int64_t start_rev, int64_t timeout_ms,
                      etcd_watch_fn on_event, void *arg, volatile bool *stop, int64_t *next_rev)
{
    watch_call call = {prefix, now_ms() + timeout_ms, on_event, arg, stop};
    *next_rev = start_rev;
    if (stop && *stop)
        return 0;
    size_t n = c->endpoints.count, first = c->current; /* an attempt may move c->current */
    bool reauthed = false;
    int rc = TRY_NEXT_ENDPOINT;
    etcd_failures failures = {.count = 0};
    for (size_t tried = 0; tried < n && (tried == 0 || now_ms() < call.deadline_ms); tried++) {
        size_t i = (first + tried) % n;
        rc = watch_at(c, i, &call, next_rev);
        if (rc == TRY_NEW_TOKEN && !reauthed) {
            reauthed = true;
            free(c->token), c->token = NULL;
            rc = watch_at(c, i, &call, next_rev);
        }
        if (rc != TRY_NEXT_ENDPOINT)
            break;
        etcd_failure_note(&failures, c);
    }
    if (rc == TRY_NEXT_ENDPOINT)
        etcd_failure_report(c, &failures);
    return rc == TRY_NEXT_ENDPOINT || rc == TRY_NEW_TOKEN ? ETCD_ERR : rc;
}
