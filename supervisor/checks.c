/* What the supervisor checks beyond what the config loader does (`hearth check` and
 * before every start and reload), and where it finds the component binaries. */
#include "supervisor/sv.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/privs.h"

int sv_validate(const hearth_config *cfg, char *err, size_t errlen)
{
    if (listeners_check(cfg, err, errlen) < 0)
        return -1;
    if (cfg->user != NULL || cfg->group != NULL) {
        uid_t uid;
        gid_t gid;
        char why[256];
        const char *user = cfg->user;
        if (user == NULL) {
            snprintf(err, errlen, "%s: key 'group': needs 'user' as well", cfg->path);
            return -1;
        }
        if (privs_lookup(user, cfg->group, &uid, &gid, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s: key '%s': %s", cfg->path,
                     strstr(why, "group") ? "group" : "user", why);
            return -1;
        }
    }
    if (cfg->run_dir == NULL || cfg->run_dir[0] != '/') {
        snprintf(err, errlen, "%s: key 'run_dir': must be an absolute path", cfg->path);
        return -1;
    }
    /* The control and notify sockets live there; sockaddr_un holds 108 bytes. */
    if (strlen(cfg->run_dir) > 90) {
        snprintf(err, errlen, "%s: key 'run_dir': longer than 90 bytes, too long for sockets",
                 cfg->path);
        return -1;
    }
    return 0;
}

static char *join(const char *a, const char *b, const char *c)
{
    size_t len = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(len);
    if (s != NULL)
        snprintf(s, len, "%s%s%s", a, b, c);
    return s;
}

/* Try dir/name; keep the path when it is an executable file. */
static bool try_path(const char *dir, const char *middle, const char *name, char **path)
{
    char *p = join(dir, middle, name);
    if (p != NULL && access(p, X_OK) == 0) {
        *path = p;
        return true;
    }
    free(p);
    return false;
}

/* HEARTH_LIBEXEC_DIR/NAME when set (tests, packaging); else next to our own executable
 * (installed: all four in one libexec dir), or ../NAME/NAME (the meson build tree). */
int sv_locate(const char *name, char **path, char *err, size_t errlen)
{
    const char *dir = getenv("HEARTH_LIBEXEC_DIR");
    if (dir != NULL && dir[0] != '\0') {
        if (try_path(dir, "/", name, path))
            return 0;
        snprintf(err, errlen, "%s: no executable %s/%s (from HEARTH_LIBEXEC_DIR)", name, dir, name);
        return -1;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
        snprintf(err, errlen, "/proc/self/exe: %s", strerror(errno));
        return -1;
    }
    self[n] = '\0';
    char *here = dirname(self);
    if (try_path(here, "/", name, path))
        return 0;
    char middle[64];
    snprintf(middle, sizeof(middle), "/../%s/", name);
    if (try_path(here, middle, name, path))
        return 0;
    snprintf(err, errlen, "%s: not found in %s (nor %s/../%s/); set HEARTH_LIBEXEC_DIR", name, here,
             here, name);
    return -1;
}
