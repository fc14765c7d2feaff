/* Listening sockets: bound here from --bind addresses, or inherited from the supervisor the
 * way systemd socket activation hands them over (LISTEN_FDS/LISTEN_PID). */
#ifndef APPSERVER_LISTEN_H
#define APPSERVER_LISTEN_H

#include <stddef.h>

#include "appserver/options.h"

typedef struct {
    int *fds;
    char **unix_paths; /* paths we created, removed at exit; NULL entries for others */
    size_t count;
    int inherited; /* came from LISTEN_FDS: the binds were not used */
} listen_set;

/* Inherited sockets when LISTEN_PID is us, else bind every address in binds. -1 with a message
 * in err. */
int listen_open(listen_set *ls, const strlist *binds, char *err, size_t errlen);
/* Hand unix socket files to uid/gid before privileges are dropped. */
void listen_chown(const listen_set *ls, unsigned uid, unsigned gid);
/* Remove the unix socket files we created, now: from then on clients get "no such file" at
 * once, while the sockets stay open for what is already queued on them. */
void listen_unlink(listen_set *ls);
/* Close the sockets; unlink the unix socket files when unlink_paths. */
void listen_close(listen_set *ls, int unlink_paths);

#endif
