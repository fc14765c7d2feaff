/* Prometheus metrics kept in a shared file: a component creates one fixed-size region before it
 * forks (RUN_DIR/metrics/NAME.shm), every process of it counts there with relaxed atomic adds
 * (no lock, no allocation, no system call per event), and the supervisor reads the files and
 * renders them in the text exposition format (version 0.0.4) when it is scraped. */
#ifndef HEARTH_METRICS_H
#define HEARTH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "shared/buf.h"

/* Set by the supervisor for its components when `metrics` is on: the directory for the files. */
#define METRICS_DIR_ENV "HEARTH_METRICS_DIR"

/* Fixed bounds keep the file, and so each scrape, a known size. */
#define METRICS_MAX_FAMILIES 48
#define METRICS_MAX_SERIES 512
#define METRICS_MAX_CELLS 4096 /* 8-byte counters per shard */
#define METRICS_MAX_SHARDS 258
#define METRICS_MAX_BUCKETS 16
#define METRICS_NAME_MAX 64
#define METRICS_HELP_MAX 192
#define METRICS_LABELS_MAX 256 /* one series' label pairs as rendered: site="a",code="2xx" */

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;

/* One series, as the hot path uses it: where its cells are. cell < 0: nothing is counted
 * (metrics off, or the series table was full). */
typedef struct {
    int32_t cell;
    int32_t family;
} metric_ref;

#define METRIC_NONE ((metric_ref){.cell = -1, .family = -1})

typedef struct metrics_region metrics_region;

/* A new region of `shards` shards (shard 0 is shared, the others each belong to one process)
 * at path, written aside and renamed into place. NULL with a reason in err. */
metrics_region *metrics_create(const char *path, size_t shards, char *err, size_t errlen);
/* The same at $HEARTH_METRICS_DIR/COMPONENT.shm; NULL (metrics off) when the variable is unset,
 * or on failure, which is logged: counting is never worth refusing to serve. */
metrics_region *metrics_create_env(const char *component, size_t shards);

/* Unmap (the file stays for the supervisor to read). NULL is fine. */
void metrics_close(metrics_region *r);

/* Define a family before forking; returns its index, or -1 (full, or a bad argument). labels:
 * comma-separated label names ("site,code"), "" for none. Histograms: bounds in the unit the
 * observations are made in, ascending; every value is divided by divisor (1, 1000 or 1000000)
 * when rendered, so milliseconds can be observed and seconds exposed. */
int metrics_family(metrics_region *r, const char *name, metric_type type, const char *help,
                   const char *labels, const uint64_t *bounds, size_t nbounds, uint64_t divisor);

/* The series of family with these label values (one per label name), made if it is new; safe
 * in any process at any time. METRIC_NONE when r is NULL or the table is full. */
metric_ref metrics_series(metrics_region *r, int family, const char *const *values);

/* Count in a shard of this process's own from now on (a dead process's one is taken over, its
 * gauges zeroed); the shared shard when none is free. Call once in each process that counts. */
void metrics_claim_shard(metrics_region *r);

/* The hot path: relaxed atomic operations on this process's shard. */
void metrics_add(metrics_region *r, metric_ref m, uint64_t n);
void metrics_sub(metrics_region *r, metric_ref m, uint64_t n); /* gauges */
void metrics_set(metrics_region *r, metric_ref m, int64_t v);  /* gauges written by one process */
void metrics_observe(metrics_region *r, metric_ref m, uint64_t v);

/* Render a region's bytes (a private copy: strings in it are terminated in place) as text.
 * Series with the same labels in several entries are summed, so are the shards. -1 when the
 * bytes are not a region of this version; what is malformed inside one is skipped. */
int metrics_render(void *data, size_t len, buf *out);
/* Read path into memory (never mapped: a truncated file must not raise SIGBUS) and render it. */
int metrics_render_file(const char *path, buf *out);

#endif
