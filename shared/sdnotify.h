/* The sd_notify protocol, spoken directly (no libsystemd): a datagram to $NOTIFY_SOCKET. Also
 * what the supervisor listens for from its children. And its other half, socket activation:
 * the listening sockets handed down as fds 3, 4, ... (LISTEN_FDS), by systemd or the
 * supervisor. */
#ifndef HEARTH_SDNOTIFY_H
#define HEARTH_SDNOTIFY_H

#include <stddef.h>

/* Send state ("READY=1", "STOPPING=1", "RELOADING=1\nMONOTONIC_USEC=...", "STATUS=...") to
 * $NOTIFY_SOCKET. Returns 0 when sent, 1 when NOTIFY_SOCKET is unset (not supervised), -1 on
 * error with errno set. */
int sd_notify_send(const char *state);
/* RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload requires. */
int sd_notify_reloading(void);

#define SD_LISTEN_FDS_START 3
#define SD_LISTEN_FDS_MAX 64

typedef struct {
    int fd;
    char name[64]; /* its LISTEN_FDNAMES entry ("http", "https", "app"); "" when none was given */
} sd_listen_fd;

/* Take the sockets handed down through LISTEN_FDS when LISTEN_PID is this process (or unset):
 * each must be a listening socket, and is made close-on-exec; LISTEN_FDS, LISTEN_PID and
 * LISTEN_FDNAMES are removed so that no child of ours takes them again. The count (0: none
 * were handed down), or -1 with a message in err. */
int sd_listen_fds_take(sd_listen_fd *out, int max, char *err, size_t errlen);

#endif
