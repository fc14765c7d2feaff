/* HTTP-01 challenge files: WEBROOT/.well-known/acme-challenge/TOKEN holding the key
 * authorization, which the edge serves as is (certbot's --webroot layout). */
#include "certd/certd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/log.h"

#define CHALLENGE_DIR "/.well-known/acme-challenge"

/* The token names a file, and comes from the network: base64url only, so it cannot climb. */
bool challenge_token_ok(const char *token)
{
    size_t n = token ? strlen(token) : 0;
    return n >= 16 && n <= 256 &&
           strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

int challenge_write(const char *webroot, const char *token, const char *key_auth)
{
    char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX];
    if (!challenge_token_ok(token) ||
        snprintf(dir, sizeof(dir), "%s" CHALLENGE_DIR, webroot) >= (int)sizeof(dir) ||
        snprintf(path, sizeof(path), "%s/%s", dir, token) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, token) >= (int)sizeof(tmp))
        return -1;
    if (store_mkdirs(dir, 0755) < 0)
        return -1;
    /* Written aside and renamed, so the CA never fetches a half-written file. No fsync: the
     * file only has to live for this run. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_error("%s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(key_auth);
    bool ok = write(fd, key_auth, len) == (ssize_t)len;
    if (close(fd) < 0)
        ok = false;
    if (!ok || rename(tmp, path) < 0) {
        log_error("%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Up to cap bytes of a regular file in dir (never a FIFO or a link: the webroot may be shared);
 * -1 when it is not one. */
static ssize_t read_small(int dirfd, const char *name, char *out, size_t cap)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    ssize_t n = -1;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= cap)
        n = read(fd, out, cap);
    if (fd >= 0)
        close(fd);
    return n;
}

/* What challenge_write leaves behind: TOKEN holding exactly TOKEN.THUMBPRINT, or .TOKEN.tmp
 * holding the start of it (the run died mid-write). Another ACME client's files have another
 * account's thumbprint (or other names), and stay. */
static bool left_by_certd(int dirfd, const char *name, const char *thumb)
{
    char token[300], want[600], got[600];
    size_t n = strlen(name);
    bool tmp = name[0] == '.';
    if (tmp && (n < 6 || strcmp(name + n - 4, ".tmp") != 0))
        return false;
    snprintf(token, sizeof(token), "%.*s", (int)(tmp ? n - 5 : n), name + tmp);
    if (!challenge_token_ok(token))
        return false;
    int wlen = snprintf(want, sizeof(want), "%s.%s", token, thumb);
    ssize_t glen = read_small(dirfd, name, got, sizeof(got));
    if (glen < 0 || wlen >= (int)sizeof(want) || (!tmp && glen != wlen) || glen > wlen)
        return false;
    return memcmp(got, want, (size_t)glen) == 0;
}

int challenge_sweep(const char *webroot, const char *thumb)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s" CHALLENGE_DIR, webroot) >= (int)sizeof(dir))
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* no directory, no leftovers */
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (left_by_certd(dirfd(d), e->d_name, thumb) && unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    if (removed)
        log_info("%s: removed %d challenge file(s) left by an earlier run", dir, removed);
    return removed;
}

void challenge_remove(const char *webroot, const char *token)
{
    char path[PATH_MAX];
    if (!challenge_token_ok(token) ||
        snprintf(path, sizeof(path), "%s" CHALLENGE_DIR "/%s", webroot, token) >= (int)sizeof(path))
        return;
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn("%s: %s", path, strerror(errno));
}
