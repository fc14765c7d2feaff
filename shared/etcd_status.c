/* etcd_status: one line per endpoint for `hearth check --online`, asking each member for its
 * version, leader and raft term, and, with auth configured, logging in at each, so a user
 * sees which member is unreachable or refuses the credentials. */
#include "shared/etcd_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"

/* A member ID: a uint64 (past int64's range half the time), written as a decimal string;
 * absent is 0 (no leader). */
static bool member_id(const json_t *status, const char *name, uint64_t *out)
{
    const json_t *v = json_object_get(status, name);
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    *out = s ? strtoull(s, &end, 10) : 0;
    return !v || (s && *s >= '0' && *s <= '9' && !errno && !*end);
}

/* "etcd 3.4.23, leader 8e9e05c52164694d, raft term 2", and the member's alarms if any. */
static bool describe(const json_t *status, buf *line)
{
    const char *version = json_string_value(json_object_get(status, "version"));
    int64_t term;
    uint64_t leader;
    if (!version || !member_id(status, "leader", &leader) ||
        !etcd_json_int64(status, "raftTerm", &term))
        return false;
    buf_printf(line, "etcd %s, ", version);
    if (leader)
        buf_printf(line, "leader %" PRIx64 ", raft term %" PRId64, leader, term);
    else
        buf_printf(line, "no leader, raft term %" PRId64, term);
    const json_t *errors = json_object_get(status, "errors");
    size_t i;
    const json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (json_is_string(e))
            buf_printf(line, "; %s", json_string_value(e));
    }
    return true;
}

/* An error message without its "etcd at URL: ": the line starts with the URL already. */
static const char *without_url(const char *message, const char *url)
{
    char at[600];
    int n = snprintf(at, sizeof(at), "etcd at %s: ", url);
    if (n > 0 && (size_t)n < sizeof(at) && strncmp(message, at, (size_t)n) == 0)
        return message + n;
    return message;
}

/* One endpoint's line; true when it answered (and accepted the credentials). */
static bool status_of(etcd_client *c, size_t i, buf *line)
{
    /* a token from another member would skip the check of the credentials here */
    free(c->token), c->token = NULL;
    json_t *answer;
    buf_printf(line, "%s: ", c->endpoints.items[i]);
    int rc = etcd_call_one(c, i, "/v3/maintenance/status", json_object(), &answer);
    uint64_t leader = 0;
    bool ok = rc == 0 && describe(answer, line) && member_id(answer, "leader", &leader);
    if (rc == 0 && !ok)
        buf_printf(line, "its status answer is malformed");
    else if (rc != 0)
        buf_printf(line, "%s", without_url(c->error, c->endpoints.items[i]));
    else if (c->username)
        buf_printf(line, ", logged in as %s", c->username);
    json_decref(answer);
    return ok && leader != 0; /* a member without a leader serves nothing */
}

int etcd_status(etcd_client *c, strlist *lines)
{
    int answered = 0;
    for (size_t i = 0; i < c->endpoints.count; i++) {
        buf line;
        buf_init(&line, 4096);
        answered += status_of(c, i, &line);
        const char *text = buf_used(&line) ? buf_head(&line) : "(out of memory)";
        strlist_add(lines, text);
        buf_free(&line);
    }
    return answered ? 0 : ETCD_ERR;
}
