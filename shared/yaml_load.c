/* The generic YAML loader (yaml_load.h): a libyaml document tree walked by field tables. */
#include "shared/yaml_load.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/strlist.h"

/* A config file is a few kilobytes; refusing huge inputs keeps a typo'd path (a log file, a
 * disk image) from being slurped into memory. */
#define YL_MAX_FILE_SIZE (4u << 20)

/* ---- messages ---- */

static void *member(void *base, size_t offset)
{
    return (char *)base + offset;
}

/* One message, "FILE:LINE:COL: key 'a.b': what". The column is libyaml's, 1-based. */
int yl_fail(yl_loader *ld, const yaml_node_t *node, const char *path, const char *fmt, ...)
{
    if (!ld->err || ld->errlen == 0)
        return -1;
    size_t used = 0;
    int n;
    if (node)
        n = snprintf(ld->err, ld->errlen, "%s:%zu:%zu: ", ld->name, node->start_mark.line + 1,
                     node->start_mark.column + 1);
    else
        n = snprintf(ld->err, ld->errlen, "%s: ", ld->name);
    used = n > 0 ? (size_t)n : 0;
    if (path && *path && used < ld->errlen) {
        n = snprintf(ld->err + used, ld->errlen - used, "key '%s': ", path);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used < ld->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->err + used, ld->errlen - used, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *yl_shown(const char *text, char out[64])
{
    size_t i = 0;
    for (; text[i] && i < 60; i++)
        out[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    if (text[i])
        memcpy(out + 57, "...", 3);
    out[i] = '\0';
    return out;
}

static const char *node_kind(const yaml_node_t *node)
{
    return node->type == YAML_MAPPING_NODE ? "a map" : "a list";
}

static void format_duration(int64_t ms, char *out, size_t len)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{MS_DAY, "d"}, {MS_HOUR, "h"}, {MS_MINUTE, "m"}, {MS_SECOND, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(out, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(out, len, "%lld%s", (long long)ms, ms == 0 ? "" : "ms");
}

static void format_size(uint64_t bytes, char *out, size_t len)
{
    static const char units[] = "gmk";
    for (int i = 0; i < 3; i++) {
        int shift = 10 * (3 - i);
        if (bytes != 0 && bytes % (UINT64_C(1) << shift) == 0) {
            snprintf(out, len, "%llu%c", (unsigned long long)(bytes >> shift), units[i]);
            return;
        }
    }
    snprintf(out, len, "%llu", (unsigned long long)bytes);
}

/* The names a field takes as a scalar (not the one a list means). */
static void format_names(const yl_field *f, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; f->names[i] && used < len; i++) {
        if (f->type == YL_NAME_OR_LIST && (int)i == f->list_means)
            continue;
        int n = snprintf(out + used, len - used, "%s%s", used ? ", " : "", f->names[i]);
        used += n > 0 ? (size_t)n : 0;
    }
}

static const char *list_shape(const yl_list *list)
{
    return list->shape ? list->shape : "a map";
}

/* What a field wants, for "expected ..., got ..." messages. */
static const char *describe(const yl_field *f, char *out, size_t len)
{
    char list[128];
    switch (f->type) {
    case YL_STRING:
    case YL_STRINGS:
        if (f->kind)
            return f->kind->want;
        return f->type == YL_STRINGS ? "a string or a list of strings" : "a string";
    case YL_BOOL:
        return "true or false";
    case YL_INT:
        snprintf(out, len, "%san integer from %lld to %lld", f->flags & YL_AUTO ? "auto or " : "",
                 (long long)f->min, (long long)f->max);
        return out;
    case YL_DURATION:
        return "a duration like 10s";
    case YL_SIZE:
        return "a size like 64k";
    case YL_ENUM:
    case YL_CHOICE:
    case YL_NAME_OR_LIST:
        format_names(f, list, sizeof(list));
        snprintf(out, len, "one of %s%s%s", list, f->type == YL_NAME_OR_LIST ? " or " : "",
                 f->type == YL_NAME_OR_LIST ? list_shape(f->list) : "");
        return out;
    case YL_FRACTION:
        return "a number between 0 and 1 like 0.33";
    case YL_MAP:
        return "a map";
    case YL_LIST:
        return "a list of maps";
    }
    return "something else";
}

static int fail_expected(yl_loader *ld, const yaml_node_t *node, const yl_field *f,
                         const char *path, const char *text)
{
    char buf[160], q[64];
    const char *want = describe(f, buf, sizeof(buf));
    char why[512];
    if (text && *text && f->kind && f->kind->why_not &&
        f->kind->why_not(text, why, sizeof(why)) < 0)
        return yl_fail(ld, node, path, "%s", why);
    if (!text)
        return yl_fail(ld, node, path, "expected %s, got %s", want, node ? node_kind(node) : "?");
    if (!*text)
        return yl_fail(ld, node, path, "expected %s, got nothing", want);
    return yl_fail(ld, node, path, "expected %s, got '%s'", want, yl_shown(text, q));
}

static int fail_range(yl_loader *ld, const yaml_node_t *node, const yl_field *f, const char *path,
                      const char *text)
{
    char lo[32], hi[32], q[64];
    const char *kind = f->type == YL_DURATION ? "a duration" : "a size";
    if (f->type == YL_DURATION) {
        format_duration(f->min, lo, sizeof(lo));
        format_duration(f->max, hi, sizeof(hi));
    } else {
        format_size((uint64_t)f->min, lo, sizeof(lo));
        format_size((uint64_t)f->max, hi, sizeof(hi));
    }
    return yl_fail(ld, node, path, "expected %s from %s to %s, got '%s'", kind, lo, hi,
                   yl_shown(text, q));
}

int yl_fail_nomem(yl_loader *ld, const yaml_node_t *node, const char *path)
{
    return yl_fail(ld, node, path, "out of memory");
}

/* ---- scalar syntax ---- */

/* 0, or -1 for bad syntax, or -2 for a number too large: the caller words them differently. */
static int parse_number(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t n = 0;
    bool overflow = false;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            n = n * 10 + d;
    }
    *s = p;
    *out = n;
    return overflow ? -2 : 0;
}

int yl_parse_duration(const char *text, int64_t *ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", MS_SECOND},  {"ms", 1},      {"s", MS_SECOND},
                 {"m", MS_MINUTE}, {"h", MS_HOUR}, {"d", MS_DAY}};
    uint64_t n;
    int rc = parse_number(&text, &n);
    if (rc == -1)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(text, units[i].unit) == 0) {
            if (rc == -2 || n > (uint64_t)(INT64_MAX / units[i].ms))
                return -2;
            *ms = (int64_t)n * units[i].ms;
            return 0;
        }
    }
    return -1;
}

int yl_parse_size(const char *text, uint64_t *bytes)
{
    uint64_t n;
    int rc = parse_number(&text, &n), shift;
    if (rc == -1)
        return -1;
    /* k, m, g, t in either case; *text | 32 lower-cases a letter */
    static const char units[] = "kmgt";
    const char *unit = *text ? strchr(units, *text | 32) : NULL;
    if (*text && (!unit || text[1]))
        return -1;
    shift = unit ? 10 * (int)(unit - units + 1) : 0;
    if (rc == -2 || n > (UINT64_MAX >> shift))
        return -2;
    *bytes = n << shift;
    return 0;
}

/* ---- storing values ---- */

static bool valid_string(const yl_field *f, const char *s)
{
    return !f->kind || !f->kind->valid || f->kind->valid(s, f->type == YL_STRINGS);
}

/* The part of text that is a path relative to the config file, or NULL. */
static const char *path_in(const yl_field *f, const char *text)
{
    if (f->kind && f->kind->path_in)
        return f->kind->path_in(text);
    return f->flags & YL_PATH ? text : NULL;
}

/* The string as stored: lowercased if the kind says so, relative paths joined to the config's
 * directory ("-" is stdout, never a path). */
static char *stored_string(yl_loader *ld, const yl_field *f, const char *text)
{
    char *out;
    const char *file = path_in(f, text);
    if (file && ld->basedir && file[0] != '/' && strcmp(file, "-") != 0) {
        size_t dirlen = strlen(ld->basedir), len = strlen(text) + dirlen + 2;
        bool slash = dirlen > 0 && ld->basedir[dirlen - 1] == '/';
        out = malloc(len);
        if (out)
            snprintf(out, len, "%.*s%s%s%s", (int)(file - text), text, ld->basedir,
                     slash ? "" : "/", file);
        return out;
    }
    out = strdup(text);
    if (out && f->kind && f->kind->lowercase)
        for (char *p = out; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    return out;
}

static int index_of(const char *const *names, const char *text)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], text) == 0)
            return i;
    return -1;
}

static int set_int(yl_loader *ld, const yaml_node_t *node, const yl_field *f, void *dst,
                   const char *path, const char *text)
{
    uint64_t n;
    const char *p = text;
    if ((f->flags & YL_AUTO) && strcmp(text, "auto") == 0) {
        *(int *)dst = 0;
        return 0;
    }
    int rc = parse_number(&p, &n);
    if (rc == -1 || *p || rc == -2 || n < (uint64_t)f->min || n > (uint64_t)f->max)
        return fail_expected(ld, node, f, path, text);
    *(int *)dst = (int)n;
    return 0;
}

static int set_duration(yl_loader *ld, const yaml_node_t *node, const yl_field *f, void *dst,
                        const char *path, const char *text)
{
    int64_t ms;
    int rc = yl_parse_duration(text, &ms);
    if (rc == -1)
        return fail_expected(ld, node, f, path, text);
    if (rc == -2 || ms < f->min || ms > f->max)
        return fail_range(ld, node, f, path, text);
    *(int64_t *)dst = ms;
    return 0;
}

static int set_size(yl_loader *ld, const yaml_node_t *node, const yl_field *f, void *dst,
                    const char *path, const char *text)
{
    uint64_t bytes;
    int rc = yl_parse_size(text, &bytes);
    if (rc == -1)
        return fail_expected(ld, node, f, path, text);
    if (rc == -2 || bytes < (uint64_t)f->min || bytes > (uint64_t)f->max)
        return fail_range(ld, node, f, path, text);
    *(uint64_t *)dst = bytes;
    return 0;
}

static int set_fraction(yl_loader *ld, const yaml_node_t *node, const yl_field *f, void *dst,
                        const char *path, const char *text)
{
    char *end;
    double x;
    /* strtod alone would also take "inf", "nan", hex and leading blanks */
    if (!((text[0] >= '0' && text[0] <= '9') || text[0] == '.') || strchr(text, 'x') ||
        strchr(text, 'X'))
        return fail_expected(ld, node, f, path, text);
    errno = 0;
    x = strtod(text, &end);
    if (*end || errno || !(x > 0.0 && x < 1.0))
        return fail_expected(ld, node, f, path, text);
    *(double *)dst = x;
    return 0;
}

static int set_string(yl_loader *ld, const yaml_node_t *node, const yl_field *f, void *dst,
                      const char *path, const char *text)
{
    char **slot = dst, *copy;
    if (f->type == YL_CHOICE && index_of(f->names, text) < 0)
        return fail_expected(ld, node, f, path, text);
    if (!valid_string(f, text))
        return fail_expected(ld, node, f, path, text);
    copy = stored_string(ld, f, text);
    if (!copy)
        return yl_fail_nomem(ld, node, path);
    free(*slot);
    *slot = copy;
    return 0;
}

/* One scalar into its field; text is "" for null. node is NULL for defaults. */
static int set_scalar(yl_loader *ld, const yaml_node_t *node, const yl_field *f, void *base,
                      const char *path, const char *text, bool null)
{
    void *dst = member(base, f->offset);
    int i;
    if (null && f->type == YL_STRING && (f->flags & YL_NULLABLE)) {
        free(*(char **)dst);
        *(char **)dst = NULL;
        return 0;
    }
    if (null || !*text)
        return fail_expected(ld, node, f, path, "");
    switch (f->type) {
    case YL_STRING:
    case YL_CHOICE:
        return set_string(ld, node, f, dst, path, text);
    case YL_BOOL:
        if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
            return fail_expected(ld, node, f, path, text);
        *(bool *)dst = text[0] == 't';
        return 0;
    case YL_INT:
        return set_int(ld, node, f, dst, path, text);
    case YL_DURATION:
        return set_duration(ld, node, f, dst, path, text);
    case YL_SIZE:
        return set_size(ld, node, f, dst, path, text);
    case YL_ENUM:
        if ((i = index_of(f->names, text)) < 0)
            return fail_expected(ld, node, f, path, text);
        *(int *)dst = i; /* the tables' enums are int-sized: they start at 0 and are small */
        return 0;
    case YL_FRACTION:
        return set_fraction(ld, node, f, dst, path, text);
    default:
        return fail_expected(ld, node, f, path, text);
    }
}

/* ---- the document ---- */

yaml_node_t *yl_node_at(yl_loader *ld, int index)
{
    return yaml_document_get_node(ld->doc, index);
}

static bool is_null(const yaml_node_t *node)
{
    const char *v;
    if (!node)
        return true;
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)node->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* The text of a scalar, or NULL after reporting an embedded NUL (C strings cannot hold it). */
static const char *scalar_text(yl_loader *ld, const yaml_node_t *node, const char *path)
{
    const char *v = (const char *)node->data.scalar.value;
    if (strlen(v) != node->data.scalar.length) {
        yl_fail(ld, node, path, "a NUL byte is not allowed in a value");
        return NULL;
    }
    return v;
}

yaml_node_t *yl_map_get(yl_loader *ld, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yl_node_at(ld, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yl_node_at(ld, p->value);
    }
    return NULL;
}

bool yl_map_has(yl_loader *ld, const yaml_node_t *map, const char *key)
{
    return yl_map_get(ld, map, key) != NULL;
}

/* Key paths for messages, "sites[0].static[1].root"; an absurdly deep or long one is cut. */
void yl_child_path(char *out, size_t len, const char *parent, const char *key)
{
    if (snprintf(out, len, "%s%s%s", parent, *parent ? "." : "", key) >= (int)len)
        out[len - 1] = '\0';
}

static void index_path(char *out, size_t len, const char *parent, size_t index)
{
    if (snprintf(out, len, "%s[%zu]", parent, index) >= (int)len)
        out[len - 1] = '\0';
}

static int load_map(yl_loader *ld, yaml_node_t *map, const yl_field *fields, void *base,
                    const char *path);

/* One item of a list of strings, checked and stored as the field says. */
static int add_text(yl_loader *ld, const yaml_node_t *node, const yl_field *f, strlist *list,
                    const char *path, const char *text)
{
    if (!*text || !valid_string(f, text))
        return fail_expected(ld, node, f, path, text);
    char *copy = stored_string(ld, f, text);
    int rc = copy ? strlist_add(list, copy) : -1;
    free(copy);
    return rc < 0 ? yl_fail_nomem(ld, node, path) : 0;
}

static int add_string(yl_loader *ld, const yaml_node_t *node, const yl_field *f, strlist *list,
                      const char *path)
{
    const char *text;
    if (node->type != YAML_SCALAR_NODE)
        return fail_expected(ld, node, f, path, NULL);
    if (!(text = scalar_text(ld, node, path)))
        return -1;
    return add_text(ld, node, f, list, path, is_null(node) ? "" : text);
}

/* A list of strings; one scalar is a list of one, null an empty list. */
static int load_strings(yl_loader *ld, yaml_node_t *node, const yl_field *f, void *base,
                        const char *path)
{
    strlist *list = member(base, f->offset);
    strlist_clear(list);
    if (is_null(node))
        return 0;
    if (node->type == YAML_MAPPING_NODE)
        return fail_expected(ld, node, f, path, NULL);
    if (node->type == YAML_SCALAR_NODE)
        return add_string(ld, node, f, list, path);
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    for (size_t i = 0; i < n; i++) {
        char item[256];
        index_path(item, sizeof(item), path, i);
        if (add_string(ld, yl_node_at(ld, node->data.sequence.items.start[i]), f, list, item) < 0)
            return -1;
    }
    return 0;
}

static void list_free(const yl_list *spec, void *base)
{
    char **array = member(base, spec->array_offset);
    size_t *count = member(base, spec->count_offset);
    for (size_t i = 0; i < *count; i++)
        yl_free_fields(spec->fields, *array + i * spec->elem_size);
    free(*array);
    *array = NULL;
    *count = 0;
}

/* A list of maps into an array of structs; one map alone is a list of one. */
static int load_list(yl_loader *ld, yaml_node_t *node, const yl_list *spec, void *base,
                     const char *path)
{
    char **array = member(base, spec->array_offset);
    size_t *count = member(base, spec->count_offset), n = 1;
    yaml_node_item_t *items = NULL;
    list_free(spec, base);
    if (is_null(node))
        return 0;
    if (node->type == YAML_SCALAR_NODE)
        return yl_fail(ld, node, path, "expected a list of maps, got '%s'",
                       yl_shown((char *)node->data.scalar.value, (char[64]){0}));
    if (node->type == YAML_SEQUENCE_NODE) {
        items = node->data.sequence.items.start;
        n = (size_t)(node->data.sequence.items.top - items);
    }
    if (n == 0)
        return 0;
    /* Zeroed elements are safe to free, so the array is owned by base from here on: an error
     * half way leaves nothing for the caller to track. */
    if (!(*array = calloc(n, spec->elem_size)))
        return yl_fail_nomem(ld, node, path);
    *count = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = items ? yl_node_at(ld, items[i]) : node;
        void *elem = *array + i * spec->elem_size;
        char ipath[256];
        if (items)
            index_path(ipath, sizeof(ipath), path, i);
        else
            snprintf(ipath, sizeof(ipath), "%s", path); /* one map alone: no index to show */
        if (item->type != YAML_MAPPING_NODE) {
            if (item->type == YAML_SCALAR_NODE)
                return yl_fail(ld, item, ipath, "expected a map, got '%s'",
                               yl_shown((char *)item->data.scalar.value, (char[64]){0}));
            return yl_fail(ld, item, ipath, "expected a map, got a list");
        }
        yl_apply_defaults(ld, spec->fields, elem);
        if (load_map(ld, item, spec->fields, elem, ipath) < 0)
            return -1;
        if (spec->check && spec->check(ld, item, elem, i, ipath) < 0)
            return -1;
    }
    return 0;
}

/* A name (stored as its index), or a list of maps meaning names[list_means]. */
static int load_name_or_list(yl_loader *ld, yaml_node_t *node, const yl_field *f, void *base,
                             const char *path)
{
    int i;
    if (node->type == YAML_SCALAR_NODE) {
        const char *text = scalar_text(ld, node, path);
        if (!text)
            return -1;
        if ((i = index_of(f->names, text)) < 0 || i == f->list_means)
            return fail_expected(ld, node, f, path, text);
        list_free(f->list, base);
        *(int *)member(base, f->offset) = i;
        return 0;
    }
    if (load_list(ld, node, f->list, base, path) < 0)
        return -1;
    if (*(size_t *)member(base, f->list->count_offset) == 0)
        return yl_fail(ld, node, path, "expected at least one %s, got an empty list",
                       list_shape(f->list));
    *(int *)member(base, f->offset) = f->list_means;
    return 0;
}

static int load_value(yl_loader *ld, yaml_node_t *node, const yl_field *f, void *base,
                      const char *path)
{
    const char *text;
    switch (f->type) {
    case YL_MAP:
        if (is_null(node))
            return 0;
        if (node->type != YAML_MAPPING_NODE)
            return fail_expected(ld, node, f, path,
                                 node->type == YAML_SCALAR_NODE ? (char *)node->data.scalar.value
                                                                : NULL);
        return load_map(ld, node, f->sub, member(base, f->offset), path);
    case YL_LIST:
        return load_list(ld, node, f->list, base, path);
    case YL_NAME_OR_LIST:
        return load_name_or_list(ld, node, f, base, path);
    case YL_STRINGS:
        return load_strings(ld, node, f, base, path);
    default:
        if (node->type != YAML_SCALAR_NODE)
            return fail_expected(ld, node, f, path, NULL);
        if (!(text = scalar_text(ld, node, path)))
            return -1;
        return set_scalar(ld, node, f, base, path, text, is_null(node));
    }
}

/* ---- unknown keys: suggest the nearest known ones ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t lb = strlen(b), row[64];
    if (lb >= sizeof(row) / sizeof(row[0]))
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; a[i - 1]; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = diag + ((a[i - 1] | 32) == (b[j - 1] | 32) ? 0 : 1);
            size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = cost < best ? cost : best;
            diag = up;
        }
    }
    return row[lb];
}

static int fail_unknown(yl_loader *ld, const yaml_node_t *node, const yl_field *fields,
                        const char *path, const char *key)
{
    /* all: every key of the map, as long as it fits the caller's message (config.h: 1 KiB) */
    char near[192] = "", all[896] = "";
    size_t nlen = 0, alen = 0, found = 0;
    size_t limit = strlen(key) <= 4 ? 1 : strlen(key) <= 8 ? 2 : 3;
    for (const yl_field *f = fields; f->key; f++) {
        int n = snprintf(all + alen, sizeof(all) - alen, "%s%s", alen ? ", " : "", f->key);
        alen += n > 0 && (size_t)n < sizeof(all) - alen ? (size_t)n : 0;
        if (strlen(key) > 40 || edit_distance(key, f->key) > limit || found == 3)
            continue;
        n = snprintf(near + nlen, sizeof(near) - nlen, "%s'%s'", found ? " or " : "", f->key);
        nlen += n > 0 && (size_t)n < sizeof(near) - nlen ? (size_t)n : 0;
        found++;
    }
    if (found)
        return yl_fail(ld, node, path, "unknown key, did you mean %s?", near);
    return yl_fail(ld, node, path, "unknown key (known keys here: %s)", all);
}

static const yl_field *find_field(const yl_field *fields, const char *key)
{
    for (const yl_field *f = fields; f->key; f++)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static int check_key(yl_loader *ld, yaml_node_t *map, yaml_node_pair_t *pair,
                     const yl_field *fields, const char *path, const yl_field **out)
{
    yaml_node_t *k = yl_node_at(ld, pair->key);
    const char *key;
    *out = NULL;
    if (k->type != YAML_SCALAR_NODE)
        return yl_fail(ld, k, path, "a key must be a plain string, got %s", node_kind(k));
    if (!(key = scalar_text(ld, k, path)))
        return -1;
    char kpath[256];
    yl_child_path(kpath, sizeof(kpath), path, key);
    if (!(*out = find_field(fields, key)))
        return fail_unknown(ld, k, fields, kpath, key);
    /* only known keys get here, so this quadratic scan is over a handful of pairs */
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
        yaml_node_t *prev = yl_node_at(ld, p->key);
        if (strcmp((char *)prev->data.scalar.value, key) == 0)
            return yl_fail(ld, k, kpath, "duplicate key (first given at line %zu)",
                           prev->start_mark.line + 1);
    }
    return 0;
}

static int load_map(yl_loader *ld, yaml_node_t *map, const yl_field *fields, void *base,
                    const char *path)
{
    char kpath[256];
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yl_field *f;
        if (check_key(ld, map, p, fields, path, &f) < 0)
            return -1;
        yl_child_path(kpath, sizeof(kpath), path, f->key);
        if (load_value(ld, yl_node_at(ld, p->value), f, base, kpath) < 0)
            return -1;
    }
    for (const yl_field *f = fields; f->key; f++) {
        if ((f->flags & YL_REQUIRED) && !yl_map_has(ld, map, f->key)) {
            yl_child_path(kpath, sizeof(kpath), path, f->key);
            return yl_fail(ld, map, kpath, "missing, and it has no default");
        }
    }
    return 0;
}

/* ---- defaults and freeing, walking the same tables ---- */

void yl_apply_defaults(yl_loader *ld, const yl_field *fields, void *base)
{
    for (const yl_field *f = fields; f->key; f++) {
        if (f->type == YL_MAP) {
            yl_apply_defaults(ld, f->sub, member(base, f->offset));
        } else if (f->def && f->type == YL_STRINGS) {
            /* a list's default names its items separated by spaces */
            strlist *list = member(base, f->offset);
            strlist_clear(list);
            for (const char *p = f->def; *p;) {
                size_t n = strcspn(p, " ");
                char item[128];
                snprintf(item, sizeof(item), "%.*s", (int)n, p);
                strlist_add(list, item);
                p += n + (p[n] == ' ');
            }
        } else if (f->def) {
            /* Defaults are ours and valid (the tests load them), so this cannot fail but for
             * memory; the caller then finds NULL strings. */
            set_scalar(ld, NULL, f, base, f->key, f->def, false);
        }
    }
}

void yl_free_fields(const yl_field *fields, void *base)
{
    for (const yl_field *f = fields; f->key; f++) {
        void *p = member(base, f->offset);
        switch (f->type) {
        case YL_STRING:
        case YL_CHOICE:
            free(*(char **)p);
            *(char **)p = NULL;
            break;
        case YL_STRINGS:
            strlist_clear(p);
            break;
        case YL_MAP:
            yl_free_fields(f->sub, p);
            break;
        case YL_LIST:
        case YL_NAME_OR_LIST:
            list_free(f->list, base);
            break;
        default:
            break;
        }
    }
}

/* ---- single keys, for command-line flags ---- */

/* The field at a dotted key, and in *base the struct that holds it; a list of maps on the
 * way stands for its last element. NULL after a message. */
static const yl_field *resolve(yl_loader *ld, const yl_field *top, const char *key, void **base)
{
    const yl_field *fields = top, *f = NULL;
    char path[256];
    snprintf(path, sizeof(path), "%s", key);
    *base = ld->root;
    for (char *step = strtok(path, "."), *next; step; step = next) {
        next = strtok(NULL, ".");
        if (f && f->type == YL_MAP) {
            *base = member(*base, f->offset);
        } else if (f) {
            size_t count = *(size_t *)member(*base, f->list->count_offset);
            if (count == 0) {
                yl_fail(ld, NULL, NULL, "comes after a '%s' entry, and there is none yet", f->key);
                return NULL;
            }
            *base =
                *(char **)member(*base, f->list->array_offset) + (count - 1) * f->list->elem_size;
        }
        if (!(f = find_field(fields, step)) || (next && f->type != YL_MAP && !f->list)) {
            yl_fail(ld, NULL, NULL, "no config key '%s'", key);
            return NULL;
        }
        fields = f->type == YL_MAP ? f->sub : f->list ? f->list->fields : NULL;
    }
    return f;
}

int yl_set(yl_loader *ld, const yl_field *top, const char *key, const char *text)
{
    void *base;
    const yl_field *f = resolve(ld, top, key, &base);
    if (!f)
        return -1;
    if (f->type == YL_STRINGS)
        return add_text(ld, NULL, f, member(base, f->offset), "", text);
    return set_scalar(ld, NULL, f, base, "", text, false);
}

int yl_clear(yl_loader *ld, const yl_field *top, const char *key)
{
    void *base;
    const yl_field *f = resolve(ld, top, key, &base);
    if (!f || (f->type != YL_STRINGS && !f->list))
        return -1;
    if (f->type == YL_STRINGS)
        strlist_clear(member(base, f->offset));
    else
        list_free(f->list, base);
    return 0;
}

int yl_add(yl_loader *ld, const yl_field *top, const char *key)
{
    void *base;
    const yl_field *f = resolve(ld, top, key, &base);
    if (!f)
        return -1;
    if (!f->list)
        return yl_fail(ld, NULL, NULL, "config key '%s' is not a list of maps", key);
    char **array = member(base, f->list->array_offset);
    size_t *count = member(base, f->list->count_offset), size = f->list->elem_size;
    char *grown = realloc(*array, (*count + 1) * size);
    if (!grown)
        return yl_fail_nomem(ld, NULL, NULL);
    *array = grown;
    memset(grown + *count * size, 0, size);
    yl_apply_defaults(ld, f->list->fields, grown + (*count)++ * size);
    return 0;
}

int yl_check_last(yl_loader *ld, const yl_field *top, const char *key)
{
    void *base;
    const yl_field *f = resolve(ld, top, key, &base);
    if (!f || !f->list)
        return -1;
    size_t count = *(size_t *)member(base, f->list->count_offset);
    if (count == 0 || !f->list->check)
        return 0;
    char *last = *(char **)member(base, f->list->array_offset) + (count - 1) * f->list->elem_size;
    return f->list->check(ld, NULL, last, count - 1, "");
}

/* libyaml's reader errors carry a byte offset rather than a mark. */
static void offset_to_mark(const char *text, size_t len, size_t offset, yaml_mark_t *mark)
{
    mark->line = 0;
    mark->column = 0;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            mark->line++;
            mark->column = 0;
        } else {
            mark->column++;
        }
    }
}

static int fail_syntax(yl_loader *ld, yaml_parser_t *parser, const char *yaml, size_t len)
{
    yaml_node_t at = {0};
    const char *problem = parser->problem ? parser->problem : "cannot parse";
    if (parser->error == YAML_MEMORY_ERROR)
        return yl_fail(ld, NULL, NULL, "out of memory");
    if (parser->error == YAML_READER_ERROR)
        offset_to_mark(yaml, len, parser->problem_offset, &at.start_mark);
    else
        at.start_mark = parser->problem_mark;
    if (parser->context)
        return yl_fail(ld, &at, NULL, "bad YAML: %s (%s at line %zu, column %zu)", problem,
                       parser->context, parser->context_mark.line + 1,
                       parser->context_mark.column + 1);
    return yl_fail(ld, &at, NULL, "bad YAML: %s", problem);
}

/* Parses one document; a second one in the same file is an error, not silently ignored. */
static int parse_document(yl_loader *ld, const char *yaml, size_t len, yaml_document_t *doc)
{
    yaml_parser_t parser;
    yaml_document_t next;
    int rc = 0;
    if (!yaml_parser_initialize(&parser))
        return yl_fail(ld, NULL, NULL, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, doc)) {
        rc = fail_syntax(ld, &parser, yaml, len);
        yaml_parser_delete(&parser);
        return rc;
    }
    if (!yaml_parser_load(&parser, &next)) {
        rc = fail_syntax(ld, &parser, yaml, len);
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&next);
        if (root)
            rc = yl_fail(ld, root, NULL, "only one YAML document is allowed in a config file");
        yaml_document_delete(&next);
    }
    if (rc < 0)
        yaml_document_delete(doc);
    yaml_parser_delete(&parser);
    return rc;
}

static int load_root(yl_loader *ld, yaml_node_t *root, const yl_field *top,
                     int (*finish)(yl_loader *ld, yaml_node_t *root))
{
    if (root && !is_null(root) && root->type != YAML_MAPPING_NODE) {
        if (root->type == YAML_SCALAR_NODE)
            return yl_fail(ld, root, NULL, "the top level must be a map of keys, got '%s'",
                           yl_shown((char *)root->data.scalar.value, (char[64]){0}));
        return yl_fail(ld, root, NULL, "the top level must be a map of keys, got a list");
    }
    if (root && root->type == YAML_MAPPING_NODE && load_map(ld, root, top, ld->root, "") < 0)
        return -1;
    return finish(ld, root);
}

int yl_load(yl_loader *ld, const char *yaml, size_t len, const yl_field *top,
            int (*finish)(yl_loader *ld, yaml_node_t *root))
{
    yaml_document_t doc;
    if (parse_document(ld, yaml, len, &doc) < 0)
        return -1;
    ld->doc = &doc;
    int rc = load_root(ld, yaml_document_get_root_node(&doc), top, finish);
    yaml_document_delete(&doc);
    ld->doc = NULL;
    return rc;
}

/* Reads the whole file; -1 with errno set (EFBIG for a file too large to be a config). */
char *yl_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, used = 0;
    char *buf = NULL;
    if (!f)
        return NULL;
    for (;;) {
        char *grown;
        if (used == cap || !buf) {
            cap = buf ? cap * 2 : cap;
            if (cap > YL_MAX_FILE_SIZE + 1)
                cap = YL_MAX_FILE_SIZE + 1;
            if (!(grown = realloc(buf, cap)))
                break;
            buf = grown;
        }
        size_t n = fread(buf + used, 1, cap - used, f);
        used += n;
        if (used > YL_MAX_FILE_SIZE) {
            errno = EFBIG;
            break;
        }
        if (n == 0) {
            if (ferror(f))
                break;
            fclose(f);
            *len = used;
            return buf;
        }
    }
    int saved = errno;
    free(buf);
    fclose(f);
    errno = saved ? saved : EIO;
    return NULL;
}

/* Relative paths in the file (unix: socket paths too) are relative to the file's directory, not to
 * the cwd: the supervisor, the edge and certd all read the same file, each from its own cwd. An
 * origin that is gone (the supervisor's copy outlives an edit) still names its directory. */
char *yl_dir_of(const char *path)
{
    char *real = realpath(path, NULL), *slash;
    if (!real && path[0] == '/')
        real = strdup(path);
    if (!real)
        return NULL;
    slash = strrchr(real, '/');
    if (slash == real)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    return real;
}
