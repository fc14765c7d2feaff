/* Route table: method + path pattern -> handler, built from the loaded modules' descriptors,
 * matched per request with 404 and 405 (with the Allow list) told apart. */
#ifndef APPSERVER_ROUTER_H
#define APPSERVER_ROUTER_H

#include <stddef.h>

#include "appserver/module.h"

#define ROUTER_MAX_SEGMENTS 32
#define ROUTER_MAX_PARAMS 16

typedef enum { SEG_LITERAL, SEG_PARAM, SEG_WILDCARD } route_seg_kind;

typedef struct {
    route_seg_kind kind;
    const char *text; /* literal text or parameter name (points into the pattern) */
    size_t len;
} route_seg;

typedef struct {
    const hearth_route *route;
    app_module *module;
    route_seg segs[ROUTER_MAX_SEGMENTS];
    size_t seg_count;
} compiled_route;

typedef struct {
    compiled_route *routes;
    size_t count;
} router;

/* A request path split into decoded segments by the caller (request.c). */
typedef struct {
    const char *segs[ROUTER_MAX_SEGMENTS + 1];
    size_t seg_count;
    const char *rest[ROUTER_MAX_SEGMENTS + 1]; /* rest[i]: decoded path from segment i on */
} route_path;

typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
} route_param;

typedef enum { ROUTE_FOUND, ROUTE_NOT_FOUND, ROUTE_BAD_METHOD } route_result;

typedef struct {
    const compiled_route *match;
    route_param params[ROUTER_MAX_PARAMS];
    size_t param_count;
    char allow[128]; /* ROUTE_BAD_METHOD: "GET, HEAD, POST" */
} route_match;

void router_init(router *r);
/* Add every route of a loaded module; -1 with a message for a malformed pattern. */
int router_add_module(router *r, app_module *m, char *err, size_t errlen);
route_result router_match(const router *r, const char *method, const route_path *path,
                          route_match *out);
void router_free(router *r);

#endif
