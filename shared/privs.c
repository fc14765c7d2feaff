/* Permanent privilege drop; see privs.h. */
#include "shared/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_id(const char *text, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end != '\0' || text[0] == '-' || v >= (unsigned long)-1 / 2)
        return -1;
    *out = v;
    return 0;
}

int privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
                 size_t errlen)
{
    unsigned long id;
    struct passwd *pw = getpwnam(user);
    if (pw != NULL) {
        *uid = pw->pw_uid;
        *gid = pw->pw_gid;
    } else if (parse_id(user, &id) == 0) {
        *uid = (uid_t)id;
        pw = getpwuid(*uid);
        *gid = pw ? pw->pw_gid : (gid_t)id;
    } else {
        snprintf(err, errlen, "unknown user '%s'", user);
        return -1;
    }
    if (group == NULL)
        return 0;
    struct group *gr = getgrnam(group);
    if (gr != NULL) {
        *gid = gr->gr_gid;
    } else if (parse_id(group, &id) == 0) {
        *gid = (gid_t)id;
    } else {
        snprintf(err, errlen, "unknown group '%s'", group);
        return -1;
    }
    return 0;
}

int privs_drop(uid_t uid, gid_t gid, char *err, size_t errlen)
{
    if (getuid() == uid && geteuid() == uid && getgid() == gid && getegid() == gid)
        return 0;
    if (setgroups(1, &gid) < 0) {
        snprintf(err, errlen, "setgroups: %s", strerror(errno));
        return -1;
    }
    if (setresgid(gid, gid, gid) < 0) {
        snprintf(err, errlen, "setresgid(%u): %s", (unsigned)gid, strerror(errno));
        return -1;
    }
    if (setresuid(uid, uid, uid) < 0) {
        snprintf(err, errlen, "setresuid(%u): %s", (unsigned)uid, strerror(errno));
        return -1;
    }
    /* If root could be regained, the drop did not stick: refuse to go on. */
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, errlen, "privileges could be regained after dropping to uid %u",
                 (unsigned)uid);
        return -1;
    }
    return 0;
}
