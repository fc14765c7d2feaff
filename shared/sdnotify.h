/* The sd_notify protocol, spoken directly (no libsystemd): a datagram to $NOTIFY_SOCKET. Also
 * what the supervisor listens for from its children. */
#ifndef HEARTH_SDNOTIFY_H
#define HEARTH_SDNOTIFY_H

/* Send state ("READY=1", "STOPPING=1", "RELOADING=1\nMONOTONIC_USEC=...", "STATUS=...") to
 * $NOTIFY_SOCKET. Returns 0 when sent, 1 when NOTIFY_SOCKET is unset (not supervised), -1 on
 * error with errno set. */
int sd_notify_send(const char *state);
/* RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload requires. */
int sd_notify_reloading(void);

#endif
