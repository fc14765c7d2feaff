/* sd_notify over a Unix datagram socket, without libsystemd; see sdnotify.h. Abstract socket
 * names (leading '@') are supported as systemd uses them. */
#include "shared/sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int sd_notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 1;
    size_t plen = strlen(path);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(addr.sun_path)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(addr.sun_path, path, plen);
    if (path[0] == '@')
        addr.sun_path[0] = '\0';
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr, alen);
    int saved = errno;
    close(fd);
    errno = saved;
    return n < 0 ? -1 : 0;
}

int sd_notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
    return sd_notify_send(msg);
}

/* LISTEN_FDS as a count from 0 to max; -1 for anything else. */
static int listen_fds_count(const char *text, int max)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (errno || end == text || *end || n < 0 || n > max)
        return -1;
    return (int)n;
}

/* The i-th name of a LISTEN_FDNAMES list ("http:https"), "" past its end. */
static void listen_fd_name(const char *names, int i, char *out, size_t len)
{
    out[0] = '\0';
    for (; names && i > 0; i--) {
        names = strchr(names, ':');
        names = names ? names + 1 : NULL;
    }
    if (names) {
        size_t n = strcspn(names, ":");
        snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), names);
    }
}

int sd_listen_fds_take(sd_listen_fd *out, int max, char *err, size_t errlen)
{
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
    if (!fds || (pid && atol(pid) != (long)getpid()))
        return 0; /* none, or meant for another process */
    int n = listen_fds_count(fds, max);
    if (n < 0) {
        snprintf(err, errlen, "LISTEN_FDS=%s: expected a count from 0 to %d", fds, max);
        return -1;
    }
    const char *names = getenv("LISTEN_FDNAMES");
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i, listening = 0;
        socklen_t len = sizeof(listening);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
            snprintf(err, errlen, "LISTEN_FDS: fd %d is not a listening socket", fd);
            return -1;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        out[i].fd = fd;
        listen_fd_name(names, i, out[i].name, sizeof(out[i].name));
    }
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    return n;
}
