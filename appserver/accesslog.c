/* Access log lines. Each is built whole and written with one write(2) on an O_APPEND file, so
 * lines from many workers never interleave. */
#include "appserver/accesslog.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int access_log_open(const char *path)
{
    if (strcmp(path, "-") == 0)
        return dup(STDOUT_FILENO);
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

/* Quote-safe copy of client-supplied text: '"', '\' and control bytes become \xHH, as nginx
 * escapes them, so a hostile User-Agent cannot forge a log line. */
static void escape(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(in ? in : "-"); *p && o + 5 < cap; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", *p);
        else
            out[o++] = (char)*p;
    }
    out[o] = '\0';
}

static void format_now(char *when, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, len, "%d/%b/%Y:%H:%M:%S %z", &tm);
}

static void write_line(int fd, const char *line, int n, size_t cap)
{
    if (n > 0) {
        size_t len = (size_t)n < cap ? (size_t)n : cap - 1;
        ssize_t w = write(fd, line, len);
        (void)w; /* a full disk must not stop the site */
    }
}

void access_log_refused(int fd, const char *client, int status, size_t bytes)
{
    char when[64], line[256];
    format_now(when, sizeof when);
    int n = snprintf(line, sizeof line, "%s - - [%s] \"-\" %d %zu \"-\" \"-\"\n", client, when,
                     status, bytes);
    write_line(fd, line, n, sizeof line);
}

void access_log_write(int fd, const hearth_req *req, int version_minor, int status, size_t bytes)
{
    char when[64], target[1024], referer[512], agent[512], line[2560];
    format_now(when, sizeof when);
    escape(target, sizeof target, hearth_req_target(req));
    escape(referer, sizeof referer, hearth_req_header(req, "Referer"));
    escape(agent, sizeof agent, hearth_req_header(req, "User-Agent"));
    int n = snprintf(line, sizeof line, "%s - - [%s] \"%s %s HTTP/1.%d\" %d %zu \"%s\" \"%s\"\n",
                     hearth_req_client_addr(req), when, hearth_req_method(req), target,
                     version_minor, status, bytes, referer, agent);
    write_line(fd, line, n, sizeof line);
}
