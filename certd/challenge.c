/* HTTP-01 challenge files: WEBROOT/.well-known/acme-challenge/TOKEN holding the key
 * authorization, which the edge serves as is (certbot's --webroot layout). */
#include "certd/certd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
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

void challenge_remove(const char *webroot, const char *token)
{
    char path[PATH_MAX];
    if (!challenge_token_ok(token) ||
        snprintf(path, sizeof(path), "%s" CHALLENGE_DIR "/%s", webroot, token) >= (int)sizeof(path))
        return;
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn("%s: %s", path, strerror(errno));
}
