/* The settings a worker applies to itself (environment, working directory) and hands to its
 * modules through hearth_setting(). */
#ifndef APPSERVER_SETTINGS_H
#define APPSERVER_SETTINGS_H

#include <stddef.h>

#include "appserver/options.h"

/* In a worker, before loading modules. -1 with a message in err. */
int settings_apply(const appserver_opts *o, char *err, size_t errlen);

#endif
