/* Certificate storage no crash can tear: each version in its own directory (files temp + fsync +
 * rename, directory fsynced), then the CERT_DIR/NAME symlink switched with one rename(). */
#include "certd/certd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/log.h"

#define STORE_MAX_FILE (1u << 20)
/* Readers see the old pair or the new pair, never a mix; the previous version stays in
 * CERT_DIR/.archive/NAME next to the current one. */
#define ARCHIVE ".archive"

bool store_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 253 || name[0] == '.' || name[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || (c == '*' && i == 0 && name[1] == '.');
        if (!ok || (c == '.' && name[i + 1] == '.'))
            return false;
    }
    return true;
}

char *store_read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= max &&
        (data = malloc((size_t)st.st_size + 1))) {
        size_t got = 0;
        ssize_t n;
        while (got < (size_t)st.st_size && (n = read(fd, data + got, (size_t)st.st_size - got)) > 0)
            got += (size_t)n;
        data[got] = '\0';
        if (len)
            *len = got;
    }
    close(fd);
    return data;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int store_write_file(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp%ld", dir, name, (long)getpid()) >=
            (int)sizeof(tmp) ||
        snprintf(final, sizeof(final), "%s/%s", dir, name) >= (int)sizeof(final))
        return -1;
    unlink(tmp);
    /* created with the final mode: a private key is never readable by others, not even
     * briefly */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        log_error("%s: %s", tmp, strerror(errno));
        return -1;
    }
    int rc = fchmod(fd, mode) == 0 && write_all(fd, data, len) == 0 && fsync(fd) == 0 ? 0 : -1;
    if (rc < 0)
        log_error("%s: %s", tmp, strerror(errno));
    if (close(fd) < 0)
        rc = -1;
    if (rc == 0 && rename(tmp, final) < 0) {
        log_error("rename %s: %s", final, strerror(errno));
        rc = -1;
    }
    if (rc < 0) {
        unlink(tmp);
        return -1;
    }
    return fsync_dir(dir);
}

int store_mkdirs(const char *path, mode_t mode)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p))
        return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST) {
        log_error("mkdir %s: %s", p, strerror(errno));
        return -1;
    }
    return 0;
}

int store_lock(const char *cert_dir, int64_t timeout_ms)
{
    char path[PATH_MAX];
    if (store_mkdirs(cert_dir, 0755) < 0 ||
        snprintf(path, sizeof(path), "%s/.lock", cert_dir) >= (int)sizeof(path))
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("%s: %s", path, strerror(errno));
        return -1;
    }
    int64_t end = wait_now_ms() + timeout_ms;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK || wait_now_ms() >= end || wait_through_hup(100) != 0) {
            log_error("%s: another certd holds the lock", path);
            close(fd);
            return -1;
        }
    }
    return fd;
}

void store_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* Highest numbered version in dir, 0 when none. */
static long latest_version(const char *dir)
{
    DIR *d = opendir(dir);
    long best = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *end;
        long v = strtol(e->d_name, &end, 10);
        if (end != e->d_name && *end == '\0' && v > best)
            best = v;
    }
    if (d)
        closedir(d);
    return best;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Keep the current and the previous version; drop older ones and unfinished ones. */
static void prune(const char *archive, long current)
{
    DIR *d = opendir(archive);
    struct dirent *e;
    char path[PATH_MAX];
    while (d && (e = readdir(d))) {
        char *end;
        long v = strtol(e->d_name, &end, 10);
        if (end == e->d_name || e->d_name[0] == '.')
            continue;
        bool unfinished = strcmp(end, ".tmp") == 0;
        if ((*end == '\0' && v < current - 1) || unfinished) {
            if (snprintf(path, sizeof(path), "%s/%s", archive, e->d_name) < (int)sizeof(path))
                remove_dir(path);
        }
    }
    if (d)
        closedir(d);
}

/* The leaf (first PEM block) and the rest, as certbot's cert.pem and chain.pem. */
static size_t leaf_end(const char *chain, size_t len)
{
    const char *marker = "-----END CERTIFICATE-----";
    const char *p = strstr(chain, marker);
    if (!p)
        return len;
    p += strlen(marker);
    if (*p == '\r')
        p++;
    if (*p == '\n')
        p++;
    return (size_t)(p - chain);
}

static int write_version(const char *dir, const char *chain, size_t chain_len, const char *key,
                         size_t key_len, const char *meta)
{
    size_t leaf = leaf_end(chain, chain_len);
    if (store_write_file(dir, "privkey.pem", key, key_len, 0600) < 0 ||
        store_write_file(dir, "cert.pem", chain, leaf, 0644) < 0 ||
        store_write_file(dir, "chain.pem", chain + leaf, chain_len - leaf, 0644) < 0 ||
        store_write_file(dir, "meta.json", meta, strlen(meta), 0644) < 0 ||
        store_write_file(dir, "fullchain.pem", chain, chain_len, 0644) < 0)
        return -1;
    return 0;
}

/* CERT_DIR/.archive/.NAME.lock, beside the versions rather than among them. */
static int save_lock(const char *cert_dir, const char *name)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/" ARCHIVE "/.%s.lock", cert_dir, name) >=
        (int)sizeof(path))
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) < 0) {
        log_error("%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Point cert_dir/name at target with one rename(). */
static int switch_link(const char *cert_dir, const char *name, const char *target)
{
    char tmp[PATH_MAX], link[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/.%s.link%ld", cert_dir, name, (long)getpid());
    snprintf(link, sizeof(link), "%s/%s", cert_dir, name);
    struct stat st;
    if (lstat(link, &st) == 0 && !S_ISLNK(st.st_mode)) {
        log_error("%s exists and is not certd's symlink; move it away", link);
        return -1;
    }
    unlink(tmp);
    if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
        log_error("%s: %s", link, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return fsync_dir(cert_dir);
}

int store_save(const char *cert_dir, const char *name, const char *chain, size_t chain_len,
               const char *key, size_t key_len, json_t *meta)
{
    char archive[PATH_MAX], tmp[PATH_MAX], final[PATH_MAX], target[PATH_MAX];
    if (!store_name_ok(name) ||
        snprintf(archive, sizeof(archive), "%s/" ARCHIVE "/%s", cert_dir, name) >=
            (int)sizeof(archive) ||
        store_mkdirs(archive, 0755) < 0)
        return -1;
    /* Two writers of one name (a cluster's sync thread and a certd --issue on the same host)
     * would pick the same version and clear each other's unfinished one: one at a time. The
     * lock is held for a few file writes; a writer that dies drops it with its descriptor. */
    int lock = save_lock(cert_dir, name);
    if (lock < 0)
        return -1;
    long version = latest_version(archive) + 1;
    if (snprintf(tmp, sizeof(tmp), "%s/%ld.tmp", archive, version) >= (int)sizeof(tmp) ||
        snprintf(final, sizeof(final), "%s/%ld", archive, version) >= (int)sizeof(final) ||
        snprintf(target, sizeof(target), ARCHIVE "/%s/%ld", name, version) >= (int)sizeof(target)) {
        close(lock);
        return -1;
    }
    remove_dir(tmp);
    char *meta_text = json_dumps(meta, JSON_INDENT(2) | JSON_SORT_KEYS);
    int rc = -1;
    if (meta_text && mkdir(tmp, 0755) == 0 &&
        write_version(tmp, chain, chain_len, key, key_len, meta_text) == 0 &&
        rename(tmp, final) == 0 && fsync_dir(archive) == 0)
        rc = switch_link(cert_dir, name, target);
    else
        log_error("writing %s: %s", tmp, strerror(errno));
    free(meta_text);
    if (rc < 0)
        remove_dir(tmp);
    else
        prune(archive, version);
    close(lock);
    return rc;
}

/* Resolve the symlink once so both files come from the same version. */
static int current_dir(const char *cert_dir, const char *name, char *out, size_t outlen)
{
    char link[PATH_MAX], target[PATH_MAX];
    snprintf(link, sizeof(link), "%s/%s", cert_dir, name);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n < 0) {
        struct stat st;
        if (stat(link, &st) < 0 || !S_ISDIR(st.st_mode))
            return -1;
        snprintf(out, outlen, "%s", link); /* a plain directory someone else made */
        return 0;
    }
    target[n] = '\0';
    if (target[0] == '/')
        snprintf(out, outlen, "%s", target);
    else if (snprintf(out, outlen, "%s/%s", cert_dir, target) >= (int)outlen)
        return -1;
    return 0;
}

static char *read_in(const char *dir, const char *file, size_t *len)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return NULL;
    return store_read_file(path, STORE_MAX_FILE, len);
}

int store_load(const char *cert_dir, const char *name, char **chain, size_t *chain_len, char **key,
               size_t *key_len, json_t **meta)
{
    char dir[PATH_MAX];
    if (!store_name_ok(name) || current_dir(cert_dir, name, dir, sizeof(dir)) < 0)
        return -1;
    *chain = read_in(dir, "fullchain.pem", chain_len);
    if (key)
        *key = read_in(dir, "privkey.pem", key_len);
    size_t mlen = 0;
    char *m = read_in(dir, "meta.json", &mlen);
    *meta = m ? json_loadb(m, mlen, 0, NULL) : NULL;
    free(m);
    if (!*chain || (key && !*key)) {
        free(*chain);
        if (key)
            free(*key);
        json_decref(*meta);
        return -1;
    }
    if (!*meta)
        *meta = json_object();
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int store_list(const char *cert_dir, char ***names, size_t *count)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(cert_dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    size_t cap = 0;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d))) {
        if (!store_name_ok(e->d_name) ||
            snprintf(path, sizeof(path), "%s/%s/fullchain.pem", cert_dir, e->d_name) >=
                (int)sizeof(path) ||
            access(path, R_OK) < 0)
            continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 8;
            char **n = realloc(*names, cap * sizeof(char *));
            if (!n)
                break;
            *names = n;
        }
        (*names)[(*count)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*count)
        qsort(*names, *count, sizeof(char *), cmp_names);
    return 0;
}

void store_free_list(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}
