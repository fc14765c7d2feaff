/* hearth_setting(): what the appserver was told for its modules (the WSGI bridge reads its
 * application, paths and mount point here), and the process-wide part of those settings that
 * a worker applies itself before loading any module. */
#include "appserver/settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hearth/app.h"

static const appserver_opts *current;

static const char *one(const char *value, size_t i)
{
    return i == 0 ? value : NULL;
}

static const char *nth(const strlist *l, size_t i)
{
    return i < l->count ? l->items[i] : NULL;
}

const char *hearth_setting(const char *name, size_t i)
{
    if (!current || !name)
        return NULL;
    if (strcmp(name, "wsgi.app") == 0)
        return one(current->wsgi_app, i);
    if (strcmp(name, "chdir") == 0)
        return one(current->chdir, i);
    if (strcmp(name, "pythonpath") == 0)
        return nth(&current->pythonpath, i);
    if (strcmp(name, "virtualenv") == 0)
        return one(current->virtualenv, i);
    if (strcmp(name, "mount") == 0)
        return one(current->mount, i);
    return NULL;
}

int settings_apply(const appserver_opts *o, char *err, size_t errlen)
{
    current = o;
    for (size_t i = 0; i < o->env.count; i++) {
        const char *eq = strchr(o->env.items[i], '=');
        char *name = eq ? strndup(o->env.items[i], (size_t)(eq - o->env.items[i])) : NULL;
        int rc = name ? setenv(name, eq + 1, 1) : -1;
        free(name);
        if (rc != 0) {
            snprintf(err, errlen, "cannot set %s in the environment", o->env.items[i]);
            return -1;
        }
    }
    if (o->chdir && chdir(o->chdir) != 0) {
        snprintf(err, errlen, "cannot change to directory %s: %s", o->chdir, strerror(errno));
        return -1;
    }
    return 0;
}
