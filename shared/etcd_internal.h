/* What the etcd client's files share (shared/etcd.h is the interface): the client itself, the
 * transport that posts to the endpoints in turn (etcd_transport.c), and the JSON of etcd's
 * gateway: base64 bytes, int64s written as strings, key-values (etcd_json.c). */
#ifndef HEARTH_ETCD_INTERNAL_H
#define HEARTH_ETCD_INTERNAL_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>

#include "shared/etcd.h"

/* No answer of etcd's is allowed to grow past this (a range of many certificates is a few
 * MiB; a broken or hostile server cannot make the client exhaust memory). */
#define ETCD_MAX_BODY (16u << 20)

struct etcd_client {
    strlist endpoints; /* without a trailing '/' */
    size_t current;    /* the endpoint that answered last: tried first */
    char *ca, *cert, *key;
    char *username, *password;
    int64_t timeout_ms;
    char *token; /* etcd auth's token, NULL until authenticated */
    CURL *curl;
    CURLM *multi; /* runs curl's transfers so a watch can look at its stop flag often */
    struct curl_slist *headers;
    CURLcode curl_result; /* of the last transfer */
    char curl_error[CURL_ERROR_SIZE];
    char error[1024];
};

/* ---- etcd_transport.c ---- */

void etcd_set_error(etcd_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Receives an answer's bytes as they come; returns false to end the transfer. */
typedef bool (*etcd_sink)(void *arg, const char *data, size_t len);

/* How one transfer to one endpoint went. */
typedef enum {
    ETCD_SENT_DONE,        /* it ran to its end; *status is the HTTP status */
    ETCD_SENT_UNREACHABLE, /* the request never went out: the next endpoint may be tried */
    ETCD_SENT_BROKEN,      /* it went out but ended early (timeout, reset, sink or stop) */
} etcd_sent;

/* POSTs body to path at endpoint number i (with the auth token when there is one), its answer
 * to sink, bounded by timeout_ms (connecting by the client's timeout); stop (may be NULL) is
 * looked at every 100 ms. The curl message of a failure is in c->curl_error. */
etcd_sent etcd_post(etcd_client *c, size_t i, const char *path, const char *body,
                    int64_t timeout_ms, etcd_sink sink, void *arg, volatile bool *stop,
                    long *status);

/* Why each endpoint in turn could not serve one call, for one message when none could. */
typedef struct {
    char text[1024];
    int count;
} etcd_failures;
/* Adds c->error (the failure at one endpoint). */
void etcd_failure_note(etcd_failures *f, const etcd_client *c);
/* c->error: every failure noted, when there were several. */
void etcd_failure_report(etcd_client *c, const etcd_failures *f);

/* Whether a call may be sent again to another endpoint after it went out without an answer
 * (or the member said it cannot serve now): reads may, writes may not, since the first
 * member may have applied them. */
typedef enum { ETCD_WRITE, ETCD_READ } etcd_kind;

/* One call of the gateway: body (consumed) POSTed to path at the endpoints in turn, starting
 * with the one that answered last, authenticating first when auth is configured, and once
 * more when etcd says the token is no longer valid. 0 with *answer (the caller's to free) the
 * JSON object of a successful answer; ETCD_NOT_FOUND when etcd said NotFound; ETCD_ERR with
 * the message in c->error. */
int etcd_call(etcd_client *c, const char *path, json_t *body, etcd_kind kind, json_t **answer);

/* The same at endpoint i alone (`hearth check --online` asks each one). */
int etcd_call_one(etcd_client *c, size_t i, const char *path, json_t *body, json_t **answer);

/* Makes sure a token is held, authenticating at endpoint i when auth is configured and there is
 * none: ETCD_SENT_DONE when there is nothing to do or it worked, ETCD_SENT_UNREACHABLE to try
 * the next endpoint; ETCD_SENT_BROKEN with c->error set when etcd refused. */
etcd_sent etcd_auth_at(etcd_client *c, size_t i);

/* An error answer of etcd's gateway ({"error": .., "message": .., "code": N} or, in a stream,
 * {"error": {"message": .., "grpc_code": N}}): the gRPC code (0 when it is not one) and the
 * message. */
int etcd_answer_error(const json_t *answer, const char **message);
/* gRPC codes etcd answers with that the client acts upon. */
enum {
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_NOT_FOUND = 5,
    GRPC_UNAVAILABLE = 14,
    GRPC_UNAUTHENTICATED = 16
};
/* Whether an error means the token must be renewed (expired, or the auth store changed). */
bool etcd_token_invalid(int code, const char *message);

/* ---- etcd_json.c ---- */

/* Base64 of len bytes, malloc'ed; NULL when out of memory. */
char *etcd_base64(const void *data, size_t len);
/* Decodes base64 text into a malloc'ed buffer NUL-terminated beyond *len; -1 when it is not
 * base64 or out of memory. */
int etcd_unbase64(const char *text, unsigned char **out, size_t *len);
/* A JSON string of the base64 of len bytes; NULL when out of memory. */
json_t *etcd_json_bytes(const void *data, size_t len);
/* The range end that makes [prefix, end) every key starting with prefix, as a JSON string of
 * its base64 (etcd's "\0" when no key is past it: the empty prefix, or bytes all 0xff). */
json_t *etcd_json_prefix_end(const char *prefix);
/* An int64 field, which the gateway writes as a string ("42"); absent is 0. false when it is
 * neither a decimal string nor a number. */
bool etcd_json_int64(const json_t *obj, const char *name, int64_t *out);
/* A JSON string of a decimal int64, as the gateway wants them. */
json_t *etcd_json_int64_string(int64_t v);
/* A key-value of the gateway's (base64 key and value, string revisions) into *out (zeroed
 * first, the caller's to free); false when it is malformed. */
bool etcd_kv_from_json(const json_t *j, etcd_kv *out);
/* The header's revision of an answer (0 when absent). */
bool etcd_header_revision(const json_t *answer, int64_t *revision);

#endif
