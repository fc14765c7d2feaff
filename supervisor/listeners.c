/* The listening sockets, bound by the supervisor (as root, before the privilege drop) and kept
 * open for its whole life: the edge's (edge.http, edge.https) and the appserver's
 * (appserver.bind). A restarted edge or appserver inherits the same sockets, so no connection
 * is refused while it is down. */
#include "supervisor/sv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shared/listen_addr.h"
#include "shared/log.h"

#define LISTEN_BACKLOG 511

static bool is_edge(char c, const char *set)
{
    return c == '\0' || strchr(set, c) != NULL;
}

/* The config keeps no line numbers for list items, so find the address in the file itself: the
 * first line holding it as a whole YAML scalar. 0 when not found. */
static int find_line(const char *path, const char *spec)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f == NULL)
        return 0;
    char line[1024];
    int lineno = 0, found = 0;
    size_t n = strlen(spec);
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        for (char *p = strstr(line, spec); p != NULL && !found; p = strstr(p + 1, spec)) {
            if ((p == line || is_edge(p[-1], "\"' [,:")) && is_edge(p[n], "\"' ],#\r\n"))
                found = lineno;
        }
    }
    fclose(f);
    return found;
}

/* "FILE:LINE: key 'edge.http[0]': " before a message that names the address itself. */
static void describe_place(const hearth_config *cfg, const char *key, size_t index,
                           const char *spec, char *err, size_t errlen)
{
    const char *path = cfg->path ? cfg->path : "config";
    int line = find_line(cfg->path, spec);
    if (line > 0)
        snprintf(err, errlen, "%s:%d: key '%s[%zu]': ", path, line, key, index);
    else
        snprintf(err, errlen, "%s: key '%s[%zu]': ", path, key, index);
}

/* The lists of listen addresses in the config, and who gets them. */
typedef struct {
    const char *key;
    const char *name; /* LISTEN_FDNAMES */
    int owner;
} listen_list;

static const listen_list lists[] = {
    {"edge.http", "http", CHILD_EDGE},
    {"edge.https", "https", CHILD_EDGE},
    {"appserver.bind", "app", CHILD_APPSERVER},
};

static const strlist *list_items(const hearth_config *cfg, size_t i)
{
    return i == 0 ? &cfg->edge.http : i == 1 ? &cfg->edge.https : &cfg->appserver.bind;
}

/* What binding would refuse before it binds: the syntax, and names that do not resolve. */
int listeners_check(const hearth_config *cfg, char *err, size_t errlen)
{
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        const strlist *list = list_items(cfg, k);
        for (size_t i = 0; i < list->count; i++) {
            listen_sockaddr addrs[LISTEN_ADDR_MAX_SOCKETS];
            char why[512];
            if (listen_addr_resolve(list->items[i], addrs, LISTEN_ADDR_MAX_SOCKETS, why,
                                    sizeof(why)) < 0) {
                describe_place(cfg, lists[k].key, i, list->items[i], err, errlen);
                strncat(err, why, errlen - strlen(err) - 1);
                return -1;
            }
        }
    }
    return 0;
}

/* Bind one socket; a unix socket file goes to the children's user, since connecting needs
 * write permission on it (the edge connects to the appserver's). */
static int bind_one(supervisor *sv, sv_listener *l, char *err, size_t errlen)
{
    char why[512], where[128];
    bool is_unix = l->addr.ss.ss_family == AF_UNIX;
    l->fd = listen_sockaddr_bind(l->spec, &l->addr, LISTEN_BACKLOG, why, sizeof(why));
    if (l->fd >= 0 && is_unix && sv->drop_privs &&
        chown(((struct sockaddr_un *)&l->addr.ss)->sun_path, sv->uid, sv->gid) < 0) {
        snprintf(why, sizeof(why), "address '%s': chown: %s", l->spec, strerror(errno));
        close(l->fd);
        l->fd = -1;
    }
    if (l->fd < 0) {
        describe_place(&sv->cfg, l->key, l->index, l->spec, err, errlen);
        strncat(err, why, errlen - strlen(err) - 1);
        return -1;
    }
    listen_sockaddr_format(&l->addr, where, sizeof(where));
    if (strcmp(where, l->spec) == 0)
        log_info("listening on %s (%s)", l->spec, l->name);
    else
        log_info("listening on %s = %s (%s)", l->spec, where, l->name);
    return 0;
}

/* One listener per socket: a name that resolves to several addresses gets one each. */
static sv_listener *add_listener(supervisor *sv, const listen_list *list, size_t index,
                                 const char *spec, const listen_sockaddr *addr)
{
    sv_listener *grown = realloc(sv->listeners, (sv->listener_count + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    sv->listeners = grown;
    sv_listener *l = &sv->listeners[sv->listener_count];
    *l = (sv_listener){.key = list->key,
                       .name = list->name,
                       .owner = list->owner,
                       .index = index,
                       .addr = *addr,
                       .fd = -1};
    l->spec = strdup(spec); /* outlives a reloaded config */
    if (l->spec == NULL)
        return NULL;
    sv->listener_count++;
    return l;
}

static int open_spec(supervisor *sv, const listen_list *list, size_t index, const char *spec,
                     char *err, size_t errlen)
{
    listen_sockaddr addrs[LISTEN_ADDR_MAX_SOCKETS];
    char why[512];
    int n = listen_addr_resolve(spec, addrs, LISTEN_ADDR_MAX_SOCKETS, why, sizeof(why));
    if (n < 0) {
        describe_place(&sv->cfg, list->key, index, spec, err, errlen);
        strncat(err, why, errlen - strlen(err) - 1);
        return -1;
    }
    for (int j = 0; j < n; j++) {
        sv_listener *l = add_listener(sv, list, index, spec, &addrs[j]);
        if (l == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (bind_one(sv, l, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Only for components that will run: a disabled appserver's socket is left to nobody. */
/* The metrics endpoint's one socket: a name that resolves to several addresses binds the first. */
int listeners_bind_tcp(const char *spec, char *why, size_t whylen)
{
    listen_sockaddr sa[LISTEN_ADDR_MAX_SOCKETS];
    if (listen_addr_resolve(spec, sa, LISTEN_ADDR_MAX_SOCKETS, why, whylen) < 0)
        return -1;
    return listen_sockaddr_bind(spec, &sa[0], LISTEN_BACKLOG, why, whylen);
}

int listeners_open(supervisor *sv, char *err, size_t errlen)
{
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        const strlist *list = list_items(&sv->cfg, k);
        if (!sv->children[lists[k].owner].enabled)
            continue;
        for (size_t i = 0; i < list->count; i++)
            if (open_spec(sv, &lists[k], i, list->items[i], err, errlen) < 0)
                return -1;
    }
    return 0;
}

/* A unix socket's file goes with it: one that a leftover worker of the dead component still
 * accepts on would otherwise stop listeners_reopen(), which leaves live sockets alone. */
static void close_listener(sv_listener *l)
{
    close(l->fd);
    l->fd = -1;
    if (l->addr.ss.ss_family == AF_UNIX)
        unlink(((struct sockaddr_un *)&l->addr.ss)->sun_path);
}

/* With the appserver FATAL, nobody would ever accept: close its sockets so the edge is refused
 * at once instead of waiting in the listen queue. */
void listeners_shut(supervisor *sv, int owner)
{
    bool closed = false;
    for (size_t i = 0; i < sv->listener_count; i++) {
        sv_listener *l = &sv->listeners[i];
        if (l->owner == owner && l->fd >= 0) {
            close_listener(l);
            closed = true;
        }
    }
    if (closed)
        log_warn("%s is FATAL: its listening sockets are closed, connections are refused until "
                 "`hearth restart %s`",
                 sv->children[owner].name, sv->children[owner].name);
}

/* Bind again what listeners_shut() closed, before the component is started anew. */
int listeners_reopen(supervisor *sv, int owner, char *err, size_t errlen)
{
    for (size_t i = 0; i < sv->listener_count; i++) {
        sv_listener *l = &sv->listeners[i];
        if (l->owner == owner && l->fd < 0 && bind_one(sv, l, err, errlen) < 0)
            return -1;
    }
    return 0;
}

void listeners_close(supervisor *sv)
{
    for (size_t i = 0; i < sv->listener_count; i++) {
        sv_listener *l = &sv->listeners[i];
        if (l->fd >= 0)
            close_listener(l);
        free(l->spec);
    }
    free(sv->listeners);
    sv->listeners = NULL;
    sv->listener_count = 0;
}
