/* The supervisor's end of the control socket (run_dir/supervisor.sock, mode 0600): reads JSON
 * request lines from each client and answers each with one line (shared/control.h). */
#include "supervisor/sv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/control.h"
#include "shared/log.h"

typedef struct control_client {
    uv_pipe_t pipe;
    struct control_client *next;
    supervisor *sv;
    size_t len;
    char in[CONTROL_LINE_MAX];
} control_client;

/* Components are listed in stop order, the order an admin thinks of the stack in. */
static const int display_order[CHILD_COUNT] = {CHILD_EDGE, CHILD_APPSERVER, CHILD_CERTD};

/* Connected clients, closed when the supervisor exits (a "stop" client waits for that). */
static control_client *clients;

typedef struct {
    uv_write_t req;
    char *data;
} control_write;

static json_t *child_status(const sv_child *c, uint64_t now)
{
    json_t *o = json_pack("{s:s, s:s, s:b, s:i}", "name", c->name, "state",
                          c->enabled ? child_state_name(c->state) : "disabled", "enabled",
                          c->enabled, "restarts", c->restarts);
    bool up = c->pid > 0;
    json_object_set_new(o, "pid", up ? json_integer(c->pid) : json_null());
    json_object_set_new(o, "uptime_ms",
                        up ? json_integer((json_int_t)(now - c->started_ms)) : json_null());
    if (c->has_exited) {
        char how[64];
        child_describe_status(c->last_status, how, sizeof(how));
        json_object_set_new(o, "last_exit", json_string(how));
    } else {
        json_object_set_new(o, "last_exit", json_null());
    }
    return o;
}

static json_t *reply_status(supervisor *sv)
{
    uv_update_time(sv->loop);
    uint64_t now = uv_now(sv->loop);
    json_t *list = json_array();
    for (size_t i = 0; i < CHILD_COUNT; i++)
        json_array_append_new(list, child_status(&sv->children[display_order[i]], now));
    return json_pack("{s:b, s:i, s:s, s:s, s:o}", "ok", 1, "pid", (int)getpid(), "state",
                     sv->state == STACK_RUNNING ? "running" : "stopping", "config", sv->config_path,
                     "components", list);
}

static json_t *reply_restart(supervisor *sv, const char *name)
{
    if (name == NULL)
        return control_error("restart needs a component name");
    char err[160];
    sv_child *c = stack_child_requested(sv, name, err, sizeof(err));
    if (c == NULL)
        return control_error(err);
    if (sv->state != STACK_RUNNING)
        return control_error("the supervisor is stopping");
    log_info("%s: restart requested", c->name);
    child_event_post(c, EV_RESTART);
    return json_pack("{s:b}", "ok", 1);
}

/* ok or not, what happened to each component: "reloaded (SIGHUP)", "refused: ...". */
static json_t *reply_reload(supervisor *sv, const char *name)
{
    char err[1024];
    sv_reload_report report;
    int rc = stack_reload(sv, name, &report, err, sizeof(err));
    json_t *reply = rc < 0 ? control_error(err) : json_pack("{s:b}", "ok", 1);
    json_t *list = json_array();
    for (size_t i = 0; i < CHILD_COUNT; i++) {
        const char *outcome = report.outcome[display_order[i]];
        if (outcome[0] != '\0')
            json_array_append_new(list, json_pack("{s:s, s:s}", "name",
                                                  sv->children[display_order[i]].name, "outcome",
                                                  outcome));
    }
    json_object_set_new(reply, "components", list);
    return reply;
}

static json_t *dispatch(supervisor *sv, json_t *req)
{
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    json_t *jname = json_object_get(req, "name");
    const char *name = json_is_string(jname) ? json_string_value(jname) : NULL;
    if (cmd == NULL)
        return control_error("missing \"cmd\"");
    if (strcmp(cmd, "status") == 0)
        return reply_status(sv);
    if (strcmp(cmd, "restart") == 0)
        return reply_restart(sv, name);
    if (strcmp(cmd, "reload") == 0)
        return reply_reload(sv, name);
    if (strcmp(cmd, "stop") == 0) {
        bool fast = json_is_true(json_object_get(req, "fast"));
        stack_stop(sv, fast);
        return json_pack("{s:b, s:b}", "ok", 1, "stopping", 1);
    }
    return control_error("unknown command");
}

static void on_client_close(uv_handle_t *h)
{
    control_client *cl = h->data;
    for (control_client **p = &clients; *p != NULL; p = &(*p)->next) {
        if (*p == cl) {
            *p = cl->next;
            break;
        }
    }
    free(cl);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    control_write *w = req->data;
    free(w->data);
    free(w);
}

static void send_reply(control_client *cl, json_t *reply)
{
    if (reply == NULL)
        reply = control_error("out of memory");
    size_t len;
    char *line = control_encode(reply, &len);
    json_decref(reply);
    control_write *w = calloc(1, sizeof(*w));
    if (line == NULL || w == NULL) {
        free(line);
        free(w);
        return;
    }
    w->data = line;
    w->req.data = w;
    uv_buf_t b = uv_buf_init(line, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&cl->pipe, &b, 1, on_written) < 0) {
        free(line);
        free(w);
    }
}

static void handle_line(control_client *cl, const char *line, size_t len)
{
    char err[256];
    json_t *req = control_decode(line, len, err, sizeof(err));
    if (req == NULL) {
        send_reply(cl, control_error(err));
        return;
    }
    send_reply(cl, dispatch(cl->sv, req));
    json_decref(req);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    control_client *cl = h->data;
    b->base = cl->in + cl->len;
    b->len = sizeof(cl->in) - cl->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    control_client *cl = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_client_close);
        return;
    }
    cl->len += (size_t)n;
    size_t start = 0;
    for (size_t i = 0; i < cl->len; i++) {
        if (cl->in[i] == '\n') {
            handle_line(cl, cl->in + start, i - start);
            start = i + 1;
        }
    }
    memmove(cl->in, cl->in + start, cl->len - start);
    cl->len -= start;
    if (cl->len == sizeof(cl->in)) {
        /* A request line past the limit: answer once and hang up. */
        send_reply(cl, control_error("request line too long"));
        uv_close((uv_handle_t *)s, on_client_close);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    supervisor *sv = server->data;
    if (status < 0)
        return;
    control_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return;
    cl->sv = sv;
    cl->next = clients;
    clients = cl;
    uv_pipe_init(sv->loop, &cl->pipe, 0);
    cl->pipe.data = cl;
    if (uv_accept(server, (uv_stream_t *)&cl->pipe) < 0 ||
        uv_read_start((uv_stream_t *)&cl->pipe, on_alloc, on_read) < 0)
        uv_close((uv_handle_t *)&cl->pipe, on_client_close);
}

int control_server_open(supervisor *sv, char *err, size_t errlen)
{
    char path[256];
    if (control_socket_path(sv->cfg.run_dir, path, sizeof(path)) < 0) {
        snprintf(err, errlen, "%s: run_dir too long for a socket path", sv->cfg.run_dir);
        return -1;
    }
    sv->control_path = strdup(path);
    uv_pipe_init(sv->loop, &sv->control, 0);
    sv->control.data = sv;
    sv->control_open = true;
    /* The pidfile lock says no other supervisor runs, so a leftover socket is stale. */
    unlink(path);
    /* Created 0600 from the start: no window in which others could connect. */
    mode_t old = umask(077);
    int rc = uv_pipe_bind(&sv->control, path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&sv->control, 16, on_connection);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, uv_strerror(rc));
        return -1;
    }
    chmod(path, 0600);
    return 0;
}

void control_server_close(supervisor *sv)
{
    if (!sv->control_open)
        return;
    sv->control_open = false;
    uv_close((uv_handle_t *)&sv->control, NULL);
    for (control_client *cl = clients; cl != NULL; cl = cl->next)
        if (!uv_is_closing((uv_handle_t *)&cl->pipe))
            uv_close((uv_handle_t *)&cl->pipe, on_client_close);
    if (sv->control_path != NULL)
        unlink(sv->control_path);
}
