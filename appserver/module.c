/* Module loader: dlopen with every symbol bound now, so a module that needs a symbol nobody
 * provides fails here, in a booting worker, and not on its first request. */
#include "appserver/module.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_descriptor(const app_module *m, char *err, size_t errlen)
{
    const hearth_module *d = m->desc;
    if (d->magic != HEARTH_APP_MAGIC) {
        snprintf(err, errlen, "%s: symbol '%s' is not a hearth module descriptor (bad magic)",
                 m->path, HEARTH_MODULE_SYMBOL);
        return -1;
    }
    unsigned major = d->abi_version & 0xffffu, minor = d->abi_version >> 16;
    if (major != HEARTH_APP_ABI_VERSION || minor > HEARTH_APP_ABI_MINOR) {
        snprintf(err, errlen,
                 "%s: module ABI version %u.%u, this appserver speaks version %d.%d; rebuild the "
                 "module against this appserver's hearth/app.h",
                 m->path, major, minor, HEARTH_APP_ABI_VERSION, HEARTH_APP_ABI_MINOR);
        return -1;
    }
    if (!d->routes) {
        snprintf(err, errlen, "%s: module declares no routes", m->path);
        return -1;
    }
    return 0;
}

int module_load(app_module *m, const char *path, const char *open_path, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    if (!m->path) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    dlerror();
    /* RTLD_LOCAL: two modules may use the same internal names without clashing. */
    m->handle = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    if (!m->handle) {
        const char *why = dlerror();
        why = why ? why : "unknown error";
        /* dlerror names the /proc/self/fd path it was given; the user knows the real one */
        size_t n = strlen(open_path);
        if (strncmp(why, open_path, n) == 0 && strncmp(why + n, ": ", 2) == 0)
            why += n + 2;
        snprintf(err, errlen, "%s: cannot load: %s", path, why);
        return -1;
    }
    m->desc = dlsym(m->handle, HEARTH_MODULE_SYMBOL);
    if (!m->desc) {
        snprintf(err, errlen, "%s: no '%s' symbol: not a hearth module", path,
                 HEARTH_MODULE_SYMBOL);
        return -1;
    }
    return check_descriptor(m, err, errlen);
}

int module_check(const char *path, char *err, size_t errlen)
{
    app_module m;
    int rc = module_load(&m, path, path, err, errlen);
    free(m.path);
    return rc;
}

int module_init(app_module *m, char *err, size_t errlen)
{
    if (m->desc->init) {
        int rc = m->desc->init(&m->data);
        if (rc != 0) {
            snprintf(err, errlen, "%s: module '%s' init failed (returned %d)", m->path,
                     m->desc->name ? m->desc->name : "?", rc);
            return -1;
        }
    }
    m->initialised = 1;
    return 0;
}

void module_fini(app_module *m)
{
    if (m->initialised && m->desc->fini)
        m->desc->fini(m->data);
    m->initialised = 0;
}
