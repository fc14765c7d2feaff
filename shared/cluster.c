/* The cluster map's files of secrets (cluster.h); its etcd client is cluster_etcd.c's. */
#include "shared/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Why st cannot be read as a small file of secrets; NULL when it can. */
static const char *refuse(const struct stat *st, size_t max, bool owner_only, char *why,
                          size_t whylen)
{
    if (!S_ISREG(st->st_mode))
        snprintf(why, whylen, "not a regular file");
    else if (owner_only && (st->st_mode & 077))
        /* A secret that other users may read is no secret: say so rather than use it. */
        snprintf(why, whylen,
                 "group or others may access it (mode %04o); it must be its owner's only "
                 "(chmod 600)",
                 (unsigned)(st->st_mode & 07777));
    else if ((size_t)st->st_size > max)
        snprintf(why, whylen, "larger than %zu bytes", max);
    else
        return NULL;
    return why;
}

char *cluster_read_small(const char *path, size_t max, bool owner_only, size_t *len, char *why,
                         size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(why, whylen, "%s", strerror(e));
        if (fd >= 0)
            close(fd);
        errno = e;
        return NULL;
    }
    char *text = NULL;
    if (!refuse(&st, max, owner_only, why, whylen)) {
        text = malloc((size_t)st.st_size + 1);
        ssize_t n = text ? read(fd, text, (size_t)st.st_size) : -1;
        if (n != st.st_size) {
            snprintf(why, whylen, "%s", text ? "short read" : "out of memory");
            free(text);
            text = NULL;
        } else {
            text[n] = '\0';
            *len = (size_t)n;
        }
    }
    close(fd);
    errno = text ? 0 : EINVAL;
    return text;
}

char *cluster_read_password(const char *path, char *err, size_t errlen)
{
    char why[200];
    size_t len;
    char *pw = cluster_read_small(path, CLUSTER_SECRET_MAX, false, &len, why, sizeof(why));
    if (!pw) {
        snprintf(err, errlen, "cluster.password_file %s: %s", path, why);
        return NULL;
    }
    if (len > 0 && pw[len - 1] == '\n')
        pw[--len] = '\0';
    if (len > 0 && pw[len - 1] == '\r')
        pw[--len] = '\0';
    return pw;
}

unsigned char *cluster_read_secret_key(const char *path, size_t *len, char *err, size_t errlen)
{
    char why[200];
    char *key = cluster_read_small(path, CLUSTER_SECRET_MAX, true, len, why, sizeof(why));
    if (key && *len < CLUSTER_SECRET_KEY_MIN) {
        snprintf(why, sizeof(why),
                 "%zu bytes, fewer than %d (make one with: head -c 32 "
                 "/dev/urandom > FILE)",
                 *len, CLUSTER_SECRET_KEY_MIN);
        free(key);
        key = NULL;
    }
    if (!key)
        snprintf(err, errlen, "cluster.secret_key_file %s: %s", path, why);
    return (unsigned char *)key;
}
