/* Locked pidfiles; see pidfile.h. The file stays open and locked (flock) for the life of the
 * process, so a stale file left by a crash never blocks a restart. */
#include "shared/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static int pidfile_fd = -1;

int pidfile_write(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        pid_t other = pidfile_read(path);
        if (other > 0)
            snprintf(err, errlen, "%s: already running as pid %d", path, (int)other);
        else
            snprintf(err, errlen, "%s: locked by another process", path);
        close(fd);
        return -1;
    }
    char text[32];
    int n = snprintf(text, sizeof(text), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (pidfile_fd >= 0)
        close(pidfile_fd);
    pidfile_fd = fd;
    return 0;
}

pid_t pidfile_read(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char text[32];
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    char *end;
    long pid = strtol(text, &end, 10);
    if (end == text || (*end != '\n' && *end != '\0') || pid <= 0 || pid > 0x3fffffff)
        return -1;
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
        return -1;
    return (pid_t)pid;
}

void pidfile_remove(const char *path)
{
    unlink(path);
    if (pidfile_fd >= 0) {
        close(pidfile_fd);
        pidfile_fd = -1;
    }
}
