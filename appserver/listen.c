/* Binding and inheriting listening sockets. A stale unix socket file (nobody accepting on it)
 * is replaced; a live one is an error, so two appservers never fight over one path. */
#include "appserver/listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024
#define SD_LISTEN_FDS_START 3
/* how long the kernel holds a TCP connection that has sent nothing before passing it on */
#define DEFER_ACCEPT_S 10

static int add_fd(listen_set *ls, int fd, const char *unix_path)
{
    int *fds = realloc(ls->fds, (ls->count + 1) * sizeof *fds);
    if (!fds)
        return -1;
    ls->fds = fds;
    char **paths = realloc(ls->unix_paths, (ls->count + 1) * sizeof *paths);
    if (!paths)
        return -1;
    ls->unix_paths = paths;
    ls->fds[ls->count] = fd;
    ls->unix_paths[ls->count] = unix_path ? strdup(unix_path) : NULL;
    ls->count++;
    return 0;
}

static int unix_in_use(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int live = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;
    close(fd);
    return live;
}

static int bind_unix(listen_set *ls, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "unix socket path too long: %s", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (unix_in_use(&sa)) {
        snprintf(err, errlen, "%s: another server is accepting on this socket", path);
        return -1;
    }
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* 0660 from the start: the edge reaches it through the group, nobody else */
    mode_t old = umask(0117);
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0 || listen(fd, LISTEN_BACKLOG) != 0 || add_fd(ls, fd, path) != 0) {
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return 0;
}

/* "HOST:PORT", "[V6]:PORT" or ":PORT" (all addresses). */
static int split_host_port(const char *addr, char *host, size_t hostlen, const char **port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1])
        return -1;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

static int bind_tcp(listen_set *ls, const char *addr, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (split_host_port(addr, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "bad bind address '%s' (want unix:PATH or HOST:PORT)", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "%s: %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    int rc = fd < 0 ? -1 : setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (rc == 0)
        rc = bind(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0 || listen(fd, LISTEN_BACKLOG) != 0 || add_fd(ls, fd, NULL) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return 0;
}

static int inherited(listen_set *ls)
{
    const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
    if (!pid || !n || atol(pid) != (long)getpid())
        return 0;
    int count = atoi(n);
    for (int i = 0; i < count; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (add_fd(ls, fd, NULL) != 0)
            return -1;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return count;
}

/* A TCP connection is accepted only once its first bytes have arrived. A worker takes the
 * connections it accepts out of everyone else's reach, and one that then runs a long
 * handler would leave a connection it took idle waiting behind it while other workers are
 * free; accepting at the first byte means the accepting worker is, at that moment, serving.
 * (A unix socket has no such option; the edge's pooled connections are not new anyway.) */
static void defer_accept(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int secs = DEFER_ACCEPT_S;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
        (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
}

int listen_open(listen_set *ls, const str_list *binds, char *err, size_t errlen)
{
    memset(ls, 0, sizeof *ls);
    int got = inherited(ls);
    for (size_t i = 0; i < ls->count; i++)
        defer_accept(ls->fds[i]);
    if (got != 0) {
        ls->inherited = got > 0;
        return got < 0 ? -1 : 0;
    }
    for (size_t i = 0; i < binds->count; i++) {
        const char *b = binds->items[i];
        int rc = strncmp(b, "unix:", 5) == 0 ? bind_unix(ls, b + 5, err, errlen)
                                             : bind_tcp(ls, b, err, errlen);
        if (rc != 0) {
            listen_close(ls, 1);
            return -1;
        }
        defer_accept(ls->fds[ls->count - 1]);
    }
    return 0;
}

void listen_chown(const listen_set *ls, unsigned uid, unsigned gid)
{
    for (size_t i = 0; i < ls->count; i++) {
        /* not fatal: the socket then stays reachable by its current owner only */
        if (ls->unix_paths[i] && chown(ls->unix_paths[i], uid, gid) != 0)
            continue;
    }
}

void listen_unlink(listen_set *ls)
{
    for (size_t i = 0; i < ls->count; i++) {
        if (ls->unix_paths[i]) {
            unlink(ls->unix_paths[i]);
            free(ls->unix_paths[i]);
            ls->unix_paths[i] = NULL;
        }
    }
}

void listen_close(listen_set *ls, int unlink_paths)
{
    for (size_t i = 0; i < ls->count; i++) {
        close(ls->fds[i]);
        if (ls->unix_paths[i]) {
            if (unlink_paths)
                unlink(ls->unix_paths[i]);
            free(ls->unix_paths[i]);
        }
    }
    free(ls->fds);
    free(ls->unix_paths);
    memset(ls, 0, sizeof *ls);
}
