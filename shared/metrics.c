/* The metrics region (shared/metrics.h): its file layout, the atomic updates the components make
 * and the renderer the supervisor runs on each scrape. */
#include "shared/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/log.h"

#define METRICS_MAGIC 0x68726d74u /* "hrmt" */
#define METRICS_VERSION 1u
/* A region is a few hundred KiB; anything far larger is not one (and is not read whole). */
#define METRICS_FILE_MAX (64u << 20)

enum { SERIES_FREE, SERIES_WRITING, SERIES_READY, SERIES_DEAD };

typedef struct {
    char name[METRICS_NAME_MAX];
    char help[METRICS_HELP_MAX];
    char labels[METRICS_NAME_MAX]; /* label names, comma-separated */
    uint32_t type;
    uint32_t bucket_count;
    uint64_t divisor;
    uint64_t bounds[METRICS_MAX_BUCKETS];
} family_rec;

typedef struct {
    _Atomic uint32_t state;
    uint32_t family;
    uint32_t cell;
    uint32_t reserved;
    char labels[METRICS_LABELS_MAX];
} series_rec;

typedef struct {
    uint32_t magic;
    uint32_t version;
    uint64_t size;
    _Atomic uint32_t family_count;
    uint32_t shard_count;
    _Atomic uint32_t series_used;
    _Atomic uint32_t cells_used;
    _Atomic int32_t owners[METRICS_MAX_SHARDS]; /* pid counting in each shard; 0: free */
    family_rec families[METRICS_MAX_FAMILIES];
    series_rec series[METRICS_MAX_SERIES];
    _Atomic uint64_t cells[]; /* shard_count x METRICS_MAX_CELLS */
} region_file;

struct metrics_region {
    region_file *f;
    size_t size;
    _Atomic uint64_t *shard; /* this process's cells */
};

static size_t region_size(size_t shards)
{
    return sizeof(region_file) + shards * METRICS_MAX_CELLS * sizeof(uint64_t);
}

/* Cells a series of this family takes: one value, or each bucket, +Inf and the sum. */
static uint32_t cells_of(const family_rec *fam)
{
    return fam->type == METRIC_HISTOGRAM ? fam->bucket_count + 2 : 1;
}

/* ---- creating ---- */

metrics_region *metrics_create(const char *path, size_t shards, char *err, size_t errlen)
{
    if (shards < 1)
        shards = 1;
    if (shards > METRICS_MAX_SHARDS)
        shards = METRICS_MAX_SHARDS;
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return NULL;
    }
    size_t size = region_size(shards);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    metrics_region *r = calloc(1, sizeof(*r));
    if (p == MAP_FAILED || r == NULL) {
        snprintf(err, errlen, "%s: %s", tmp, p == MAP_FAILED ? strerror(errno) : "out of memory");
        if (p != MAP_FAILED)
            munmap(p, size);
        free(r);
        unlink(tmp);
        return NULL;
    }
    r->f = p;
    r->size = size;
    r->f->magic = METRICS_MAGIC;
    r->f->version = METRICS_VERSION;
    r->f->size = size;
    r->f->shard_count = (uint32_t)shards;
    r->shard = r->f->cells; /* the shared shard until a process claims its own */
    if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "rename %s: %s", path, strerror(errno));
        munmap(p, size);
        free(r);
        unlink(tmp);
        return NULL;
    }
    return r;
}

metrics_region *metrics_create_env(const char *component, size_t shards)
{
    const char *dir = getenv(METRICS_DIR_ENV);
    if (dir == NULL || dir[0] == '\0')
        return NULL;
    char path[4096], err[4200];
    snprintf(path, sizeof(path), "%s/%s.shm", dir, component);
    metrics_region *r = metrics_create(path, shards, err, sizeof(err));
    if (r == NULL)
        log_warn("metrics off: %s", err);
    return r;
}

void metrics_close(metrics_region *r)
{
    if (r == NULL)
        return;
    munmap(r->f, r->size);
    free(r);
}

static bool valid_name(const char *s)
{
    if (!*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == ':' || *s == ','))
            return false;
    return true;
}

static bool valid_divisor(uint64_t d)
{
    return d == 1 || d == 1000 || d == 1000000;
}

int metrics_family(metrics_region *r, const char *name, metric_type type, const char *help,
                   const char *labels, const uint64_t *bounds, size_t nbounds, uint64_t divisor)
{
    if (r == NULL)
        return -1;
    uint32_t n = atomic_load(&r->f->family_count);
    if (n >= METRICS_MAX_FAMILIES || strlen(name) >= METRICS_NAME_MAX || !valid_name(name) ||
        strchr(name, ',') || strlen(help) >= METRICS_HELP_MAX || strpbrk(help, "\\\n") ||
        strlen(labels) >= METRICS_NAME_MAX || (labels[0] && !valid_name(labels)) ||
        nbounds > METRICS_MAX_BUCKETS || !valid_divisor(divisor))
        return -1;
    family_rec *fam = &r->f->families[n];
    memset(fam, 0, sizeof(*fam));
    strcpy(fam->name, name);
    strcpy(fam->help, help);
    strcpy(fam->labels, labels);
    fam->type = type;
    fam->divisor = divisor;
    if (type == METRIC_HISTOGRAM) {
        fam->bucket_count = (uint32_t)nbounds;
        memcpy(fam->bounds, bounds, nbounds * sizeof(*bounds));
    }
    atomic_store_explicit(&r->f->family_count, n + 1, memory_order_release);
    return (int)n;
}

/* ---- series ---- */

/* name="value" with value escaped as the format asks (\\, \", \n); -1 when out is too small. */
static int label_pair(char *out, size_t len, const char *name, const char *value)
{
    size_t k = 0;
    int w = snprintf(out, len, "%s=\"", name);
    if (w < 0 || (size_t)w >= len)
        return -1;
    k = (size_t)w;
    for (const char *s = value; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        size_t n = esc ? 2 : 1;
        if (k + n + 2 > len)
            return -1;
        memcpy(out + k, esc ? esc : s, n);
        k += n;
    }
    if (k + 2 > len)
        return -1;
    out[k++] = '"';
    out[k] = '\0';
    return 0;
}

/* name1="v1",name2="v2" for the family's label names; -1 when it does not fit. */
static int render_labels(const family_rec *fam, const char *const *values, char *out, size_t len)
{
    char names[METRICS_NAME_MAX];
    size_t used = 0, i = 0;
    strcpy(names, fam->labels);
    out[0] = '\0';
    for (char *save = NULL, *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        if (used > 0 && used + 1 < len)
            out[used++] = ',';
        const char *value = values[i] ? values[i] : "";
        i++;
        if (label_pair(out + used, len - used, n, value) < 0)
            return -1;
        used += strlen(out + used);
    }
    return 0;
}

static metric_ref find_series(const region_file *f, int family, const char *labels)
{
    uint32_t used = atomic_load(&f->series_used);
    for (uint32_t i = 0; i < used && i < METRICS_MAX_SERIES; i++) {
        const series_rec *s = &f->series[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) == SERIES_READY &&
            s->family == (uint32_t)family && strcmp(s->labels, labels) == 0)
            return (metric_ref){.cell = (int32_t)s->cell, .family = family};
    }
    return METRIC_NONE;
}

/* Two processes making the same series at once may make it twice: the renderer sums such
 * twins, so only a little room is lost, and no lock is needed. */
metric_ref metrics_series(metrics_region *r, int family, const char *const *values)
{
    if (r == NULL || family < 0 || (uint32_t)family >= atomic_load(&r->f->family_count))
        return METRIC_NONE;
    region_file *f = r->f;
    char labels[METRICS_LABELS_MAX];
    if (render_labels(&f->families[family], values, labels, sizeof(labels)) < 0)
        return METRIC_NONE;
    metric_ref found = find_series(f, family, labels);
    if (found.cell >= 0)
        return found;
    uint32_t need = cells_of(&f->families[family]);
    uint32_t cell = atomic_fetch_add(&f->cells_used, need);
    if (cell > METRICS_MAX_CELLS - need)
        return METRIC_NONE;
    uint32_t index = atomic_fetch_add(&f->series_used, 1);
    if (index >= METRICS_MAX_SERIES)
        return METRIC_NONE;
    series_rec *s = &f->series[index];
    atomic_store(&s->state, SERIES_WRITING);
    s->family = (uint32_t)family;
    s->cell = cell;
    strcpy(s->labels, labels);
    atomic_store_explicit(&s->state, SERIES_READY, memory_order_release);
    return (metric_ref){.cell = (int32_t)cell, .family = family};
}

/* A process that died counting left its gauges (open connections, say) at what they were. */
static void zero_gauges(region_file *f, _Atomic uint64_t *shard)
{
    uint32_t used = atomic_load(&f->series_used);
    for (uint32_t i = 0; i < used && i < METRICS_MAX_SERIES; i++) {
        const series_rec *s = &f->series[i];
        if (atomic_load(&s->state) == SERIES_READY && s->family < METRICS_MAX_FAMILIES &&
            f->families[s->family].type == METRIC_GAUGE)
            atomic_store_explicit(&shard[s->cell], 0, memory_order_relaxed);
    }
}

static bool owner_gone(pid_t pid)
{
    return pid == 0 || (kill(pid, 0) < 0 && errno == ESRCH);
}

void metrics_claim_shard(metrics_region *r)
{
    if (r == NULL)
        return;
    region_file *f = r->f;
    int32_t me = (int32_t)getpid();
    for (uint32_t i = 1; i < f->shard_count; i++) {
        int32_t owner = atomic_load(&f->owners[i]);
        if (owner == me || !owner_gone(owner) ||
            !atomic_compare_exchange_strong(&f->owners[i], &owner, me))
            continue;
        r->shard = f->cells + (size_t)i * METRICS_MAX_CELLS;
        if (owner != 0)
            zero_gauges(f, r->shard);
        return;
    }
    r->shard = f->cells;
}

/* ---- the hot path ---- */

void metrics_add(metrics_region *r, metric_ref m, uint64_t n)
{
    if (r != NULL && m.cell >= 0)
        atomic_fetch_add_explicit(&r->shard[m.cell], n, memory_order_relaxed);
}

void metrics_sub(metrics_region *r, metric_ref m, uint64_t n)
{
    if (r != NULL && m.cell >= 0)
        atomic_fetch_sub_explicit(&r->shard[m.cell], n, memory_order_relaxed);
}

void metrics_set(metrics_region *r, metric_ref m, int64_t v)
{
    if (r != NULL && m.cell >= 0)
        atomic_store_explicit(&r->shard[m.cell], (uint64_t)v, memory_order_relaxed);
}

void metrics_observe(metrics_region *r, metric_ref m, uint64_t v)
{
    if (r == NULL || m.cell < 0)
        return;
    const family_rec *fam = &r->f->families[m.family];
    uint32_t b = 0;
    while (b < fam->bucket_count && v > fam->bounds[b])
        b++;
    atomic_fetch_add_explicit(&r->shard[m.cell + b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->shard[m.cell + fam->bucket_count + 1], v, memory_order_relaxed);
}

/* ---- rendering ---- */

static const char *type_name(uint32_t type)
{
    return type == METRIC_COUNTER ? "counter" : type == METRIC_GAUGE ? "gauge" : "histogram";
}

/* v / divisor in decimal, exactly, without trailing zeros: 2500 / 1000 -> "2.5". */
static void format_scaled(char *out, size_t len, uint64_t v, uint64_t divisor)
{
    if (divisor == 1) {
        snprintf(out, len, "%llu", (unsigned long long)v);
        return;
    }
    int digits = divisor == 1000 ? 3 : 6;
    uint64_t frac = v % divisor;
    if (frac == 0) {
        snprintf(out, len, "%llu", (unsigned long long)(v / divisor));
        return;
    }
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(out, len, "%llu.%0*llu", (unsigned long long)(v / divisor), digits,
             (unsigned long long)frac);
}

/* A family read from a file: usable only if what the writer could get wrong is right. */
static bool family_ok(family_rec *fam)
{
    fam->name[METRICS_NAME_MAX - 1] = '\0';
    fam->help[METRICS_HELP_MAX - 1] = '\0';
    fam->labels[METRICS_NAME_MAX - 1] = '\0';
    if (!valid_name(fam->name) || strchr(fam->name, ',') || strpbrk(fam->help, "\\\n") ||
        (fam->labels[0] && !valid_name(fam->labels)) || fam->type > METRIC_HISTOGRAM ||
        fam->bucket_count > METRICS_MAX_BUCKETS || !valid_divisor(fam->divisor))
        return false;
    for (uint32_t b = 1; b < fam->bucket_count; b++)
        if (fam->bounds[b] <= fam->bounds[b - 1])
            return false;
    return true;
}

static bool series_ok(const series_rec *s, uint32_t family, const family_rec *fam)
{
    return atomic_load(&s->state) == SERIES_READY && s->family == family &&
           s->cell <= METRICS_MAX_CELLS - cells_of(fam) && !strchr(s->labels, '\n');
}

typedef struct {
    region_file *f;
    uint32_t series_used;
    uint32_t shards;
} view;

/* The totals of series index i's cells: every shard, and every twin (same family and labels). */
static void sum_cells(const view *v, uint32_t i, const family_rec *fam, uint64_t *total)
{
    uint32_t n = cells_of(fam);
    const series_rec *s = &v->f->series[i];
    memset(total, 0, n * sizeof(*total));
    for (uint32_t j = i; j < v->series_used; j++) {
        const series_rec *t = &v->f->series[j];
        if (j != i && (!series_ok(t, s->family, fam) || strcmp(t->labels, s->labels) != 0))
            continue;
        for (uint32_t sh = 0; sh < v->shards; sh++)
            for (uint32_t k = 0; k < n; k++)
                total[k] +=
                    atomic_load_explicit(&v->f->cells[(size_t)sh * METRICS_MAX_CELLS + t->cell + k],
                                         memory_order_relaxed);
    }
}

static bool twin_before(const view *v, uint32_t i, const family_rec *fam)
{
    const series_rec *s = &v->f->series[i];
    for (uint32_t j = 0; j < i; j++) {
        const series_rec *t = &v->f->series[j];
        if (series_ok(t, s->family, fam) && strcmp(t->labels, s->labels) == 0)
            return true;
    }
    return false;
}

/* name{labels,extra} or name{extra} or name{labels} or name. */
static void sample_name(buf *out, const char *name, const char *suffix, const char *labels,
                        const char *extra)
{
    buf_printf(out, "%s%s", name, suffix);
    if (labels[0] || extra[0])
        buf_printf(out, "{%s%s%s}", labels, labels[0] && extra[0] ? "," : "", extra);
}

static void render_histogram(buf *out, const family_rec *fam, const char *labels,
                             const uint64_t *total)
{
    uint64_t cumulative = 0;
    char le[64], num[48];
    for (uint32_t b = 0; b <= fam->bucket_count; b++) {
        cumulative += total[b];
        if (b < fam->bucket_count) {
            format_scaled(num, sizeof(num), fam->bounds[b], fam->divisor);
            snprintf(le, sizeof(le), "le=\"%s\"", num);
        } else {
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        }
        sample_name(out, fam->name, "_bucket", labels, le);
        buf_printf(out, " %llu\n", (unsigned long long)cumulative);
    }
    format_scaled(num, sizeof(num), total[fam->bucket_count + 1], fam->divisor);
    sample_name(out, fam->name, "_sum", labels, "");
    buf_printf(out, " %s\n", num);
    sample_name(out, fam->name, "_count", labels, "");
    buf_printf(out, " %llu\n", (unsigned long long)cumulative);
}

static void render_sample(buf *out, const family_rec *fam, const char *labels,
                          const uint64_t *total)
{
    char num[48];
    if (fam->type == METRIC_HISTOGRAM) {
        render_histogram(out, fam, labels, total);
        return;
    }
    if (fam->type == METRIC_GAUGE)
        snprintf(num, sizeof(num), "%lld", (long long)(int64_t)total[0]);
    else
        format_scaled(num, sizeof(num), total[0], fam->divisor);
    sample_name(out, fam->name, "", labels, "");
    buf_printf(out, " %s\n", num);
}

static void render_family(const view *v, uint32_t fi, buf *out)
{
    family_rec *fam = &v->f->families[fi];
    uint64_t total[METRICS_MAX_BUCKETS + 2];
    bool head = false;
    if (!family_ok(fam))
        return;
    for (uint32_t i = 0; i < v->series_used; i++) {
        if (!series_ok(&v->f->series[i], fi, fam) || twin_before(v, i, fam))
            continue;
        if (!head)
            buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name,
                       type_name(fam->type));
        head = true;
        sum_cells(v, i, fam, total);
        render_sample(out, fam, v->f->series[i].labels, total);
    }
}

int metrics_render(void *data, size_t len, buf *out)
{
    region_file *f = data;
    if (len < sizeof(region_file) || f->magic != METRICS_MAGIC || f->version != METRICS_VERSION ||
        f->shard_count < 1 || f->shard_count > METRICS_MAX_SHARDS ||
        len < region_size(f->shard_count))
        return -1;
    view v = {.f = f, .shards = f->shard_count, .series_used = atomic_load(&f->series_used)};
    if (v.series_used > METRICS_MAX_SERIES)
        v.series_used = METRICS_MAX_SERIES;
    for (uint32_t i = 0; i < v.series_used; i++)
        f->series[i].labels[METRICS_LABELS_MAX - 1] = '\0';
    uint32_t families = atomic_load(&f->family_count);
    for (uint32_t fi = 0; fi < families && fi < METRICS_MAX_FAMILIES; fi++)
        render_family(&v, fi, out);
    return 0;
}

int metrics_render_file(const char *path, buf *out)
{
    /* O_NONBLOCK: a FIFO put in the file's place must not hang the supervisor's loop */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (uint64_t)st.st_size > METRICS_FILE_MAX) {
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *data = malloc(size);
    while (data != NULL && got < size) {
        ssize_t n = pread(fd, data + got, size - got, (off_t)got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    int rc = data != NULL ? metrics_render(data, got, out) : -1;
    free(data);
    return rc;
}
