/* Leveled log lines to stderr or a file, as text or JSON lines (jansson). Each line is written
 * with one write() so lines from several processes sharing the fd never interleave. */
#include "shared/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static const char *log_component = "hearth";
static log_level log_threshold = HLOG_INFO;
static bool log_json;
static int log_fd = STDERR_FILENO;
static char *log_path;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *component, log_level level, bool json)
{
    log_component = component;
    log_threshold = level;
    log_json = json;
}

void log_set_level(log_level level)
{
    log_threshold = level;
}

log_level log_get_level(void)
{
    return log_threshold;
}

const char *log_level_name(log_level level)
{
    return level_names[level];
}

int log_level_parse(const char *name)
{
    if (strcasecmp(name, "warning") == 0)
        return HLOG_WARN;
    for (int i = 0; i <= HLOG_ERROR; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

static int open_log_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int log_set_file(const char *path)
{
    if (path == NULL || strcmp(path, "-") == 0) {
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        log_fd = STDERR_FILENO;
        free(log_path);
        log_path = NULL;
        return 0;
    }
    int fd = open_log_file(path);
    if (fd < 0)
        return -1;
    char *copy = strdup(path);
    if (copy == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    free(log_path);
    log_path = copy;
    return 0;
}

int log_reopen(void)
{
    if (log_path == NULL)
        return 0;
    int fd = open_log_file(log_path);
    if (fd < 0)
        return -1;
    /* dup2 keeps the same fd number, so a line being written concurrently is not lost. */
    dup2(fd, log_fd);
    close(fd);
    return 0;
}

static void format_time(char *out, size_t len)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

static size_t format_json(char *line, size_t cap, const char *ts, log_level level, const char *msg)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:i, s:s}", "time", ts, "level", level_names[level],
                            "component", log_component, "pid", (int)getpid(), "msg", msg);
    if (obj == NULL)
        return 0;
    size_t n = json_dumpb(obj, line, cap - 1, JSON_COMPACT);
    json_decref(obj);
    if (n == 0 || n > cap - 1)
        return 0;
    line[n++] = '\n';
    return n;
}

static size_t format_text(char *line, size_t cap, const char *ts, log_level level, const char *msg)
{
    int n = snprintf(line, cap, "%s %s[%d] %s: %s\n", ts, log_component, (int)getpid(),
                     level_names[level], msg);
    if (n < 0)
        return 0;
    if ((size_t)n >= cap) {
        /* Truncated: keep the line ending so the next line starts cleanly. */
        line[cap - 2] = '\n';
        return cap - 1;
    }
    return (size_t)n;
}

void log_vmsg(log_level level, const char *fmt, va_list ap)
{
    if (level < log_threshold)
        return;
    int saved_errno = errno;
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 256], ts[40];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    format_time(ts, sizeof(ts));
    size_t n = log_json ? format_json(line, sizeof(line), ts, level, msg)
                        : format_text(line, sizeof(line), ts, level, msg);
    if (n > 0) {
        ssize_t w;
        do {
            w = write(log_fd, line, n);
        } while (w < 0 && errno == EINTR);
    }
    errno = saved_errno;
}

void log_msg(log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

void log_repeated(log_repeat *r, uint64_t now_ms, log_level level, const char *fmt, ...)
{
    if (level < log_threshold)
        return;
    if (r->logged && now_ms - r->last_ms < LOG_REPEAT_INTERVAL_MS) {
        r->held++;
        return;
    }
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->held)
        log_msg(level, "%s (and %lu similar in the last %llu s)", msg, r->held,
                (unsigned long long)((now_ms - r->last_ms) / 1000));
    else
        log_msg(level, "%s", msg);
    r->logged = true;
    r->last_ms = now_ms;
    r->held = 0;
}

int log_fd_get(void)
{
    return log_fd;
}
