/* A YAML document loaded into C structs by tables of fields (key, type, place in the struct,
 * bounds, default), with messages naming file:line:column and the key. It knows nothing of
 * hearth's settings: shared/config.c holds the tables (the schema), their checks and the
 * derived defaults. Only libhearth's config code includes this. */
#ifndef HEARTH_YAML_LOAD_H
#define HEARTH_YAML_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#define MS_SECOND INT64_C(1000)
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)
#define MS_DAY (24 * MS_HOUR)

enum yl_type {
    YL_STRING,
    YL_BOOL,
    YL_INT,
    YL_DURATION, /* int64_t milliseconds, written "500ms", "10s", "5m", "12h", "90d" or seconds */
    YL_SIZE,     /* uint64_t bytes, written "512", "64k", "1m", "2g" */
    YL_ENUM,     /* stored as an int-sized enum, the index into names */
    YL_CHOICE,   /* stored as a string, but only one of names */
    YL_STRINGS,  /* strlist; one scalar counts as a list of one */
    YL_FRACTION, /* double, 0 < x < 1 */
    YL_MAP,      /* a nested struct described by another field table */
    YL_LIST,     /* an array of structs, each a map (see yl_list) */
    /* A scalar or a list: one of names (an int-sized enum at offset), or a list of maps (list)
     * which then stores names[list_means]; that name is not written as a scalar. */
    YL_NAME_OR_LIST,
};

enum {
    YL_NULLABLE = 1 << 0, /* null (`key: ~` or `key:`) leaves it NULL */
    YL_PATH = 1 << 1,     /* a relative path is taken relative to the config file */
    YL_AUTO = 1 << 2,     /* "auto" is accepted and stored as 0 */
    YL_REQUIRED = 1 << 3,
};

typedef struct yl_field yl_field;
typedef struct yl_loader yl_loader;

/* What a string must look like beyond being one (a host name, an address, ...). */
typedef struct {
    const char *want; /* for "expected ..., got ..." */
    bool (*valid)(const char *text, bool in_list);
    /* The part of text naming a file relative to the config file's directory ("unix:PATH":
     * PATH); NULL: none. Without this hook YL_PATH makes the whole text a path. */
    const char *(*path_in)(const char *text);
    bool lowercase; /* stored lowercased */
    /* Its own words for a refused text (-1 and why), in place of "expected WANT"; NULL: none. */
    int (*why_not)(const char *text, char *why, size_t len);
} yl_kind;

typedef struct {
    const yl_field *fields; /* every element is a map of these keys */
    size_t elem_size;
    size_t array_offset; /* the array and its size_t count, relative to the struct holding */
    size_t count_offset; /* the list */
    /* After an element is loaded (node NULL when it comes from a flag); -1 after yl_fail. */
    int (*check)(yl_loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path);
    const char *shape; /* one element as messages show it, "{cert, key}"; NULL: "a map" */
} yl_list;

struct yl_field {
    const char *key;
    enum yl_type type;
    unsigned flags;
    size_t offset;
    int64_t min, max;         /* YL_INT, YL_DURATION, YL_SIZE */
    const char *const *names; /* YL_ENUM, YL_CHOICE, YL_NAME_OR_LIST */
    const yl_field *sub;      /* YL_MAP */
    const yl_list *list;      /* YL_LIST, YL_NAME_OR_LIST */
    const yl_kind *kind;      /* YL_STRING, YL_STRINGS: NULL for any text */
    int list_means;           /* YL_NAME_OR_LIST */
    /* The default as it would be written in YAML (a list of strings: its items separated by
     * spaces); NULL: none. */
    const char *def;
};

struct yl_loader {
    yaml_document_t *doc; /* NULL while applying defaults or flags */
    const char *name;     /* the file name for messages (a flag's name for flags) */
    const char *basedir;  /* relative paths are joined to it; NULL: kept as written */
    void *root;           /* the struct the top-level table describes */
    char *err;
    size_t errlen;
};

/* Loads yaml over ld->root (defaults applied by the caller): the top level is a map of top's
 * keys; then finish(ld, root node) for checks across keys. -1 after one message in ld->err. */
int yl_load(yl_loader *ld, const char *yaml, size_t len, const yl_field *top,
            int (*finish)(yl_loader *ld, yaml_node_t *root));
void yl_apply_defaults(yl_loader *ld, const yl_field *fields, void *base);
void yl_free_fields(const yl_field *fields, void *base);

/* One key of ld->root by its dotted path ("edge.max_header_size"; a list of maps on the way
 * stands for its last element), as a flag sets it: parsed and bounded as in the file, a list
 * of strings appended to. Messages start with ld->name. */
int yl_set(yl_loader *ld, const yl_field *top, const char *key, const char *text);
int yl_clear(yl_loader *ld, const yl_field *top, const char *key); /* empties a list */
int yl_add(yl_loader *ld, const yl_field *top, const char *key);   /* a list of maps: + defaults */
int yl_check_last(yl_loader *ld, const yl_field *top, const char *key); /* the list's check */

/* For checks: one message "FILE:LINE:COL: key 'a.b': what" into ld->err; returns -1. */
int yl_fail(yl_loader *ld, const yaml_node_t *node, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int yl_fail_nomem(yl_loader *ld, const yaml_node_t *node, const char *path);
/* The offending value as shown in messages: bounded, with control bytes made visible. */
const char *yl_shown(const char *text, char out[64]);
yaml_node_t *yl_node_at(yl_loader *ld, int index);
yaml_node_t *yl_map_get(yl_loader *ld, const yaml_node_t *map, const char *key);
bool yl_map_has(yl_loader *ld, const yaml_node_t *map, const char *key);
/* "parent.key" into out, cut when absurdly long. */
void yl_child_path(char *out, size_t len, const char *parent, const char *key);

/* 0, or -1 for bad syntax, or -2 for a value too large. */
int yl_parse_duration(const char *text, int64_t *ms);
int yl_parse_size(const char *text, uint64_t *bytes);

/* The whole file in a malloc'ed buffer (refused past a few MiB); NULL with errno set. */
char *yl_read_file(const char *path, size_t *len);
/* The directory relative paths in the file at path are taken from (malloc'ed); NULL if none. */
char *yl_dir_of(const char *path);

#endif
