/* sd_notify over a Unix datagram socket, without libsystemd; see sdnotify.h. Abstract socket
 * names (leading '@') are supported as systemd uses them. */
#include "shared/sdnotify.h"

#include <errno.h>
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
