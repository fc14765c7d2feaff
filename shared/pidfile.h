/* Pidfiles held locked for the life of the process, so a second instance is told who runs
 * already and a stale file left by a crash never blocks a restart. */
#ifndef HEARTH_PIDFILE_H
#define HEARTH_PIDFILE_H

#include <sys/types.h>

/* Write our pid to path. Fails (-1, message in err) when another live process holds it. */
int pidfile_write(const char *path, char *err, size_t errlen);
/* Read the pid in path; -1 when missing, malformed or the process is gone. */
pid_t pidfile_read(const char *path);
void pidfile_remove(const char *path);

#endif
