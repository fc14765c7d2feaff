/* The appserver's listening sockets: bound from its bind addresses (shared/listen_addr.c: a
 * stale unix socket file is replaced, a live one is an error, so two appservers never fight
 * over one path) or inherited through LISTEN_FDS; the unix socket files it made are its own. */
#include "appserver/listen.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/listen_addr.h"
#include "shared/sdnotify.h"

#define LISTEN_BACKLOG 1024
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

/* Every socket spec stands for (a name may stand for several). */
static int bind_spec(listen_set *ls, const char *spec, char *err, size_t errlen)
{
    int fds[LISTEN_ADDR_MAX_SOCKETS];
    int n = listen_addr_bind_all(spec, LISTEN_BACKLOG, fds, err, errlen);
    bool is_unix = strncmp(spec, "unix:", 5) == 0;
    for (int i = 0; i < n; i++) {
        if (add_fd(ls, fds[i], is_unix ? spec + 5 : NULL) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return n < 0 ? -1 : 0;
}

static int inherited(listen_set *ls, char *err, size_t errlen)
{
    sd_listen_fd fds[SD_LISTEN_FDS_MAX];
    int n = sd_listen_fds_take(fds, SD_LISTEN_FDS_MAX, err, errlen);
    for (int i = 0; i < n; i++) {
        if (add_fd(ls, fds[i].fd, NULL) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return n;
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

int listen_open(listen_set *ls, const strlist *binds, char *err, size_t errlen)
{
    memset(ls, 0, sizeof *ls);
    int got = inherited(ls, err, errlen);
    for (size_t i = 0; i < ls->count; i++)
        defer_accept(ls->fds[i]);
    if (got != 0) {
        ls->inherited = got > 0;
        return got < 0 ? -1 : 0;
    }
    for (size_t i = 0; i < binds->count; i++) {
        size_t first = ls->count;
        if (bind_spec(ls, binds->items[i], err, errlen) != 0) {
            listen_close(ls, 1);
            return -1;
        }
        for (size_t j = first; j < ls->count; j++)
            defer_accept(ls->fds[j]);
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
