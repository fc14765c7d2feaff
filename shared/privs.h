/* Dropping root for good: supplementary groups, gid, then uid, and a check that it stuck. */
#ifndef HEARTH_PRIVS_H
#define HEARTH_PRIVS_H

#include <sys/types.h>

/* Look up user (and group, or the user's primary group when NULL). 0 or -1 with a message in
 * err. Numeric ids are accepted. */
int privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
                 size_t errlen);
/* Become uid/gid permanently. No-op when already running as them. -1 with a message in err. */
int privs_drop(uid_t uid, gid_t gid, char *err, size_t errlen);

#endif
