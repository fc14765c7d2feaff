/* Loading application modules (shared objects) into a worker and checking their descriptor
 * against the ABI this appserver speaks. */
#ifndef APPSERVER_MODULE_H
#define APPSERVER_MODULE_H

#include <stddef.h>

#include "hearth/app.h"

typedef struct {
    char *path;                /* as configured, for messages */
    void *handle;              /* dlopen handle */
    const hearth_module *desc; /* the exported descriptor */
    void *data;                /* what init() stored */
    int initialised;
} app_module;

/* dlopen open_path (e.g. /proc/self/fd/N, pinned by the master) and check the descriptor.
 * path names the module in messages. -1 with a message in err. */
int module_load(app_module *m, const char *path, const char *open_path, char *err, size_t errlen);
/* Whether path would load: dlopen, the descriptor symbol, its magic and ABI version; init() is
 * not run (it may open databases). For a throwaway process (appserver --check): the module's
 * constructors do run, and may crash it. -1 with a message in err. */
int module_check(const char *path, char *err, size_t errlen);
/* Run the module's init(). -1 with a message in err when it refuses. */
int module_init(app_module *m, char *err, size_t errlen);
/* fini() when init() ran; the handle stays open (handlers may still be referenced). */
void module_fini(app_module *m);

#endif
