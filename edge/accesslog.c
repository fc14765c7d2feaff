/* The access log: one line per request in nginx's "combined" format or as JSON, written with
 * one write(2) to an O_APPEND file so worker processes never interleave inside a line. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "shared/log.h"
#include "edge/req.h"

static char *access_path;

int edge_access_open(edge_worker *w, const char *path, bool json)
{
    w->access_json = json;
    w->access_fd = -1;
    if (!path)
        return 0;
    free(access_path);
    access_path = strdup(path);
    w->access_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return w->access_fd < 0 ? -1 : 0;
}

/* USR1 after logrotate moved the file away: open the path anew, keep the old fd on failure. */
int edge_access_reopen(edge_worker *w)
{
    if (!access_path)
        return 0;
    int fd = open(access_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        log_error("access log %s: %s", access_path, strerror(errno));
        return -1;
    }
    if (w->access_fd >= 0)
        close(w->access_fd);
    w->access_fd = fd;
    return 0;
}

/* Quotes, backslashes and bytes outside printable ASCII become \xHH, as nginx escapes them, so
 * a hostile User-Agent cannot forge log lines. */
static void append_escaped(buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            buf_printf(b, "\\x%02X", ch);
        else
            buf_append(b, s, 1);
    }
}

static void combined(const edge_req *r, buf *b)
{
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S %z", &tm);
    buf_printf(b, "%s - - [%s] \"", edge_req_client(r), when);
    append_escaped(b, edge_req_info(r, 0));
    buf_append_str(b, " ");
    append_escaped(b, edge_req_info(r, 1));
    buf_printf(b, " %s\" %d %llu \"", r->protocol, r->status, (unsigned long long)r->body_sent);
    append_escaped(b, edge_req_info(r, 3));
    buf_append_str(b, "\" \"");
    append_escaped(b, edge_req_info(r, 4));
    buf_append_str(b, "\"\n");
}

static void json_line(const edge_req *r, buf *b)
{
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o = json_object();
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "remote_addr", json_string(edge_req_client(r)));
    /* json_stringn_nocheck is not wanted: request bytes may be any VCHAR, not valid UTF-8. */
    const char *keys[] = {"method", "target", "host", "referer", "user_agent"};
    for (int i = 0; i < 5; i++) {
        buf tmp;
        buf_init(&tmp, 0);
        append_escaped(&tmp, edge_req_info(r, i));
        buf_append(&tmp, "", 1);
        json_object_set_new(o, keys[i], json_string(tmp.data ? tmp.data : ""));
        buf_free(&tmp);
    }
    json_object_set_new(o, "protocol", json_string(r->protocol));
    json_object_set_new(o, "status", json_integer(r->status));
    json_object_set_new(o, "body_bytes_sent", json_integer((json_int_t)r->body_sent));
    json_object_set_new(o, "request_time_ms",
                        json_integer((json_int_t)(edge_now_ms() - r->started_ms)));
    json_object_set_new(o, "tls", json_boolean(r->tls));
    if (r->upstream) { /* nginx's $upstream_addr, and how many tries it took */
        json_object_set_new(o, "upstream", json_string(r->upstream));
        json_object_set_new(o, "upstream_tries", json_integer(r->upstream_tries));
    }
    char *text = json_dumps(o, JSON_COMPACT);
    if (text) {
        buf_append_str(b, text);
        buf_append_str(b, "\n");
        free(text);
    }
    json_decref(o);
}

void edge_access_write(const edge_req *r)
{
    edge_metrics_request(r);
    if (edge_w.access_fd < 0 || r->status == 0)
        return;
    buf b;
    buf_init(&b, 0);
    if (edge_w.access_json)
        json_line(r, &b);
    else
        combined(r, &b);
    if (buf_used(&b) > 0 && write(edge_w.access_fd, buf_head(&b), buf_used(&b)) < 0)
        log_warn("access log: %s", strerror(errno));
    buf_free(&b);
}
