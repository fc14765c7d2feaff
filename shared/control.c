/* JSON-lines framing and a small blocking client for the supervisor's control socket; see
 * control.h. The supervisor's own (libuv) server side lives in supervisor/. */
#include "shared/control.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int control_socket_path(const char *run_dir, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s", run_dir, CONTROL_SOCKET_NAME);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

char *control_encode(const json_t *msg, size_t *len)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (line == NULL) {
        free(text);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

json_t *control_decode(const char *line, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (msg == NULL) {
        snprintf(err, errlen, "bad JSON at column %d: %s", jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(msg)) {
        json_decref(msg);
        snprintf(err, errlen, "expected a JSON object");
        return NULL;
    }
    return msg;
}

json_t *control_error(const char *message)
{
    return json_pack("{s:b, s:s}", "ok", 0, "error", message);
}

int control_connect(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        snprintf(err, errlen, "%s: path too long for a socket", path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        snprintf(err, errlen, "%s: %s (is the supervisor running?)", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be readable before the deadline; 1 readable, 0 timeout, -1 error. */
static int wait_readable(int fd, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r;
    }
}

/* Read up to the first '\n' (the protocol has one reply per request, so nothing follows). */
static char *read_line(int fd, int timeout_ms, size_t *len, char *err, size_t errlen)
{
    long long deadline = now_ms() + timeout_ms;
    size_t cap = 4096, used = 0;
    char *line = malloc(cap);
    while (line != NULL) {
        if (wait_readable(fd, deadline) <= 0) {
            snprintf(err, errlen, "no reply from the supervisor within %dms", timeout_ms);
            break;
        }
        ssize_t n = recv(fd, line + used, cap - used, 0);
        if (n <= 0) {
            snprintf(err, errlen, "connection closed before a reply");
            break;
        }
        char *nl = memchr(line + used, '\n', (size_t)n);
        used += (size_t)n;
        if (nl != NULL) {
            *len = (size_t)(nl - line);
            return line;
        }
        if (used == cap) {
            char *bigger = cap < CONTROL_LINE_MAX ? realloc(line, cap * 2) : NULL;
            if (bigger == NULL) {
                snprintf(err, errlen, "reply longer than %d bytes", CONTROL_LINE_MAX);
                break;
            }
            line = bigger;
            cap *= 2;
        }
    }
    free(line);
    return NULL;
}

json_t *control_call(int fd, const json_t *request, int timeout_ms, char *err, size_t errlen)
{
    size_t len;
    char *out = control_encode(request, &len);
    if (out == NULL) {
        snprintf(err, errlen, "cannot encode the request");
        return NULL;
    }
    int rc = write_all(fd, out, len);
    free(out);
    if (rc < 0) {
        snprintf(err, errlen, "send: %s", strerror(errno));
        return NULL;
    }
    char *line = read_line(fd, timeout_ms, &len, err, errlen);
    if (line == NULL)
        return NULL;
    json_t *reply = control_decode(line, len, err, errlen);
    free(line);
    return reply;
}

int control_wait_closed(int fd, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    char scratch[512];
    for (;;) {
        if (wait_readable(fd, deadline) <= 0)
            return -1;
        ssize_t n = recv(fd, scratch, sizeof(scratch), 0);
        if (n == 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return errno == ECONNRESET ? 0 : -1;
    }
}
