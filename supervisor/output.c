/* Relays a child's stdout/stderr to the supervisor's stderr one line at a time, each line
 * prefixed with the component's name, so journald shows who said what. A reader outlives the
 * child it came from: it drains the pipe to EOF, then frees itself. */
#include "supervisor/sv.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/log.h"

/* Longer lines are cut and carried on in the next line, so one chatty child cannot make the
 * supervisor buffer without bound. */
#define OUTPUT_LINE_MAX 8192

typedef struct output_reader {
    uv_pipe_t pipe;
    struct output_reader *next;
    const char *name;
    size_t len;
    char line[OUTPUT_LINE_MAX];
} output_reader;

/* Open readers, so a stopping supervisor can close the ones grandchildren still hold. */
static output_reader *readers;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static bool json_lines;

void output_set_json(bool json)
{
    json_lines = json;
}

/* With log_format json, the stream must stay JSON lines: a child's own JSON line (it names its
 * component already) passes as it is, anything else is wrapped. */
static bool emit_json(output_reader *r, const char *p, size_t n)
{
    if (n > 0 && p[0] == '{') {
        char out[OUTPUT_LINE_MAX + 1];
        memcpy(out, p, n);
        out[n] = '\n';
        write_all(STDERR_FILENO, out, n + 1);
        return true;
    }
    json_t *obj = json_pack("{s:s, s:s%}", "component", r->name, "msg", p, n);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (text != NULL) {
        size_t len = strlen(text);
        text[len] = '\n'; /* replaces the NUL: written by length */
        write_all(STDERR_FILENO, text, len + 1);
        free(text);
        return true;
    }
    return false; /* not UTF-8: the plain line is better than none */
}

/* One write per line, so lines from several children never interleave mid-line. */
static void emit(output_reader *r, const char *p, size_t n)
{
    if (json_lines && emit_json(r, p, n))
        return;
    size_t prefix = strlen(r->name) + 2;
    char out[OUTPUT_LINE_MAX + 64];
    memcpy(out, r->name, prefix - 2);
    memcpy(out + prefix - 2, ": ", 2);
    memcpy(out + prefix, p, n);
    out[prefix + n] = '\n';
    write_all(STDERR_FILENO, out, prefix + n + 1);
}

static void flush_partial(output_reader *r)
{
    if (r->len > 0)
        emit(r, r->line, r->len);
    r->len = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    output_reader *r = h->data;
    b->base = r->line + r->len;
    b->len = sizeof(r->line) - r->len;
}

static void on_close(uv_handle_t *h)
{
    output_reader *r = h->data;
    for (output_reader **p = &readers; *p != NULL; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    free(r);
}

static void consume(output_reader *r)
{
    size_t start = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->line[i] == '\n') {
            emit(r, r->line + start, i - start);
            start = i + 1;
        }
    }
    memmove(r->line, r->line + start, r->len - start);
    r->len -= start;
    if (r->len == sizeof(r->line))
        flush_partial(r);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    output_reader *r = s->data;
    if (n > 0) {
        r->len += (size_t)n;
        consume(r);
        return;
    }
    if (n < 0) {
        flush_partial(r);
        uv_close((uv_handle_t *)s, on_close);
    }
}

int output_attach(uv_loop_t *loop, int fd, const char *name)
{
    output_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -1;
    r->name = name;
    uv_pipe_init(loop, &r->pipe, 0);
    r->pipe.data = r;
    r->next = readers;
    readers = r;
    int rc = uv_pipe_open(&r->pipe, fd);
    if (rc < 0)
        close(fd);
    else
        rc = uv_read_start((uv_stream_t *)&r->pipe, on_alloc, on_read);
    if (rc < 0) {
        log_warn("%s: cannot relay its output: %s", name, uv_strerror(rc));
        uv_close((uv_handle_t *)&r->pipe, on_close);
    }
    return 0;
}

void output_close_all(void)
{
    for (output_reader *r = readers; r != NULL; r = r->next) {
        if (!uv_is_closing((uv_handle_t *)&r->pipe)) {
            flush_partial(r);
            uv_close((uv_handle_t *)&r->pipe, on_close);
        }
    }
}
