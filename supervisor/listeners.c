/* The listening sockets, bound by the supervisor (as root, before the privilege drop) and kept
 * open for its whole life: the edge's (edge.http, edge.https) and the appserver's
 * (appserver.bind). A restarted edge or appserver inherits the same sockets, so no connection
 * is refused while it is down. */
#include "supervisor/sv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shared/log.h"

#define LISTEN_BACKLOG 511

typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
    int v6only; /* -1: leave the system default */
    bool any;   /* ":80": every address, IPv6 and IPv4 together when the host has IPv6 */
} listen_addr;

static int parse_port(const char *text, uint16_t *port)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static void set_any6(listen_addr *a, uint16_t port)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->addr;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_any;
    sin6->sin6_port = htons(port);
    a->len = sizeof(*sin6);
    a->v6only = 0;
    a->any = true;
}

static int resolve_host(const char *host, uint16_t port, listen_addr *a)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return -1;
    memcpy(&a->addr, res->ai_addr, res->ai_addrlen);
    a->len = res->ai_addrlen;
    freeaddrinfo(res);
    if (a->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->addr)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&a->addr)->sin6_port = htons(port);
    return 0;
}

/* ":80", "80", "*:80", "[::]:443", "[::1]:8443", "127.0.0.1:8080", "localhost:8080". */
static int parse_listen(const char *spec, listen_addr *a, char *why, size_t whylen)
{
    memset(a, 0, sizeof(*a));
    a->v6only = -1;
    char host[256];
    const char *port_text;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host)) {
            snprintf(why, whylen, "expected [IPV6]:PORT");
            return -1;
        }
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        port_text = close + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        size_t hlen = colon ? (size_t)(colon - spec) : 0;
        if (hlen >= sizeof(host)) {
            snprintf(why, whylen, "host name too long");
            return -1;
        }
        memcpy(host, spec, hlen);
        host[hlen] = '\0';
        port_text = colon ? colon + 1 : spec;
    }
    uint16_t port;
    if (parse_port(port_text, &port) < 0) {
        snprintf(why, whylen, "port must be 1-65535");
        return -1;
    }
    if (host[0] == '\0' || strcmp(host, "*") == 0) {
        set_any6(a, port);
        return 0;
    }
    if (spec[0] == '[')
        a->v6only = 1; /* "[::]:443" means IPv6 only, as in nginx */
    if (resolve_host(host, port, a) < 0) {
        snprintf(why, whylen, "cannot resolve '%s'", host);
        return -1;
    }
    return 0;
}

static int open_socket(const listen_addr *a, char *why, size_t whylen)
{
    int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->v6only >= 0)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &a->v6only, sizeof(a->v6only));
    if (bind(fd, (const struct sockaddr *)&a->addr, a->len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int listeners_bind_tcp(const char *spec, char *why, size_t whylen)
{
    listen_addr a;
    return parse_listen(spec, &a, why, whylen) < 0 ? -1 : open_socket(&a, why, whylen);
}

/* "unix:PATH": a stale socket file from an earlier run is replaced. Owned by the children's
 * user, since connecting needs write permission on the file (the edge connects to it). */
static int bind_unix(supervisor *sv, const char *path, char *why, size_t whylen)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        snprintf(why, whylen, "path too long for a socket");
        return -1;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return -1;
    }
    unlink(path);
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
        (sv->drop_privs && chown(path, sv->uid, sv->gid) < 0)) {
        snprintf(why, whylen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Bind one address; ":80" on a host without IPv6 falls back to 0.0.0.0. */
static int bind_listen(supervisor *sv, const char *spec, char *why, size_t whylen)
{
    if (strncmp(spec, "unix:", 5) == 0)
        return bind_unix(sv, spec + 5, why, whylen);
    listen_addr a;
    if (parse_listen(spec, &a, why, whylen) < 0)
        return -1;
    int fd = open_socket(&a, why, whylen);
    if (fd < 0 && a.any && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a.addr;
        uint16_t port = ((struct sockaddr_in6 *)&a.addr)->sin6_port;
        memset(&a.addr, 0, sizeof(a.addr));
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = port;
        a.len = sizeof(*sin);
        a.v6only = -1;
        fd = open_socket(&a, why, whylen);
    }
    return fd;
}

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

static void describe_place(const hearth_config *cfg, const char *key, size_t index,
                           const char *spec, char *err, size_t errlen)
{
    const char *path = cfg->path ? cfg->path : "config";
    int line = find_line(cfg->path, spec);
    if (line > 0)
        snprintf(err, errlen, "%s:%d: key '%s[%zu]' ('%s'): ", path, line, key, index, spec);
    else
        snprintf(err, errlen, "%s: key '%s[%zu]' ('%s'): ", path, key, index, spec);
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

static const config_strings *list_items(const hearth_config *cfg, size_t i)
{
    return i == 0 ? &cfg->edge.http : i == 1 ? &cfg->edge.https : &cfg->appserver.bind;
}

int listeners_check(const hearth_config *cfg, char *err, size_t errlen)
{
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        const config_strings *list = list_items(cfg, k);
        for (size_t i = 0; i < list->count; i++) {
            listen_addr a;
            char why[128];
            if (strncmp(list->items[i], "unix:", 5) == 0)
                continue;
            if (parse_listen(list->items[i], &a, why, sizeof(why)) < 0) {
                describe_place(cfg, lists[k].key, i, list->items[i], err, errlen);
                strncat(err, why, errlen - strlen(err) - 1);
                return -1;
            }
        }
    }
    return 0;
}

static int bind_one(supervisor *sv, sv_listener *l, char *err, size_t errlen)
{
    char why[128];
    l->fd = bind_listen(sv, l->spec, why, sizeof(why));
    if (l->fd < 0) {
        describe_place(&sv->cfg, l->key, l->index, l->spec, err, errlen);
        strncat(err, why, errlen - strlen(err) - 1);
        return -1;
    }
    log_info("listening on %s (%s)", l->spec, l->name);
    return 0;
}

/* Only for components that will run: a disabled appserver's socket is left to nobody. */
int listeners_open(supervisor *sv, char *err, size_t errlen)
{
    size_t total = 0;
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
        total += list_items(&sv->cfg, k)->count;
    sv->listeners = calloc(total ? total : 1, sizeof(*sv->listeners));
    if (sv->listeners == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        const config_strings *list = list_items(&sv->cfg, k);
        if (!sv->children[lists[k].owner].enabled)
            continue;
        for (size_t i = 0; i < list->count; i++) {
            sv_listener *l = &sv->listeners[sv->listener_count];
            l->key = lists[k].key;
            l->name = lists[k].name;
            l->owner = lists[k].owner;
            l->index = i;
            l->spec = strdup(list->items[i]); /* outlives a reloaded config */
            l->fd = -1;
            if (l->spec == NULL) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            sv->listener_count++;
            if (bind_one(sv, l, err, errlen) < 0)
                return -1;
        }
    }
    return 0;
}

/* With the appserver FATAL, nobody would ever accept: close its sockets so the edge is refused
 * at once instead of waiting in the listen queue. */
void listeners_shut(supervisor *sv, int owner)
{
    bool closed = false;
    for (size_t i = 0; i < sv->listener_count; i++) {
        sv_listener *l = &sv->listeners[i];
        if (l->owner == owner && l->fd >= 0) {
            close(l->fd);
            l->fd = -1;
            closed = true;
        }
    }
    if (closed)
        log_warn("%s is FATAL: its listening sockets are closed, connections are refused until "
                 "`supervisor restart %s`",
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
            close(l->fd);
        if (strncmp(l->spec, "unix:", 5) == 0)
            unlink(l->spec + 5);
        free(l->spec);
    }
    free(sv->listeners);
    sv->listeners = NULL;
    sv->listener_count = 0;
}
