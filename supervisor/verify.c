/* Validating a config before any component runs it: the loader and the supervisor's own checks
 * (checks.c), then each component that would run it checks it itself (`edge --check`, ...), in
 * throwaway processes as the components' user: a module's constructors may crash, a key may be
 * unreadable to that user only. A config that passes becomes the copy in run_dir that every
 * start and restart reads, so a file edited on disk never reaches a component unchecked (nginx
 * keeps its last good configuration in memory to the same end). */
#include "supervisor/sv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shared/log.h"

/* A check that takes longer is stuck (a module's constructor waiting on something). The
 * supervisor waits for the checks before it answers `reload`, whose client gives up after 10s. */
#define CHECK_TIMEOUT_MS 5000
#define CHECK_OUTPUT_MAX 4096

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The last non-empty line a check printed: its reason. */
static void last_line(char *out, size_t len, char *line, size_t linelen)
{
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        len--;
    out[len] = '\0';
    char *start = memrchr(out, '\n', len);
    start = start ? start + 1 : out;
    size_t n = strlen(start) < linelen - 1 ? strlen(start) : linelen - 1;
    memcpy(line, start, n);
    line[n] = '\0';
}

/* Keeps the tail of what the check says: the reason comes last. */
static void append_tail(char *out, size_t *len, const char *buf, size_t n)
{
    if (n > CHECK_OUTPUT_MAX) {
        buf += n - CHECK_OUTPUT_MAX;
        n = CHECK_OUTPUT_MAX;
    }
    if (*len + n > CHECK_OUTPUT_MAX) {
        size_t drop = *len + n - CHECK_OUTPUT_MAX;
        memmove(out, out + drop, *len - drop);
        *len -= drop;
    }
    memcpy(out + *len, buf, n);
    *len += n;
}

/* Reads the check's output to its end (killing it at the deadline), then reaps it. */
static void collect(sv_child *c, pid_t pid, int fd, int64_t deadline, sv_verdict *v)
{
    char out[CHECK_OUTPUT_MAX + 1];
    size_t len = 0;
    bool timed_out = false;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char buf[1024];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        append_tail(out, &len, buf, (size_t)n);
    }
    close(fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    v->ok = !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (v->ok)
        return;
    last_line(out, len, v->detail, sizeof(v->detail));
    char how[64];
    child_describe_status(status, how, sizeof(how));
    if (timed_out)
        snprintf(v->detail, sizeof(v->detail), "`%s --check` gave no answer within %ds", c->name,
                 CHECK_TIMEOUT_MS / 1000);
    else if (v->detail[0] == '\0' || !WIFEXITED(status))
        snprintf(v->detail + strlen(v->detail), sizeof(v->detail) - strlen(v->detail),
                 "%s`%s --check` ended with %s", v->detail[0] ? "; " : "", c->name, how);
}

int verify_components(supervisor *sv, const hearth_config *cfg, const char *path,
                      const char *origin, sv_verdict v[CHILD_COUNT])
{
    bool wanted[CHILD_COUNT];
    pid_t pids[CHILD_COUNT];
    int fds[CHILD_COUNT];
    stack_wanted(cfg, wanted);
    /* All at once: a reload waits for the slowest check, not for their sum. */
    for (int i = 0; i < CHILD_COUNT; i++) {
        sv_child *c = &sv->children[i];
        memset(&v[i], 0, sizeof(v[i]));
        pids[i] = -1;
        if (!wanted[i])
            continue;
        v[i].checked = true;
        if (c->path == NULL && sv_locate(c->name, &c->path, v[i].detail, sizeof(v[i].detail)) < 0)
            continue;
        pids[i] = spawn_check(sv, c, path, origin, &fds[i]);
        if (pids[i] < 0)
            snprintf(v[i].detail, sizeof(v[i].detail), "cannot run `%s --check`", c->name);
    }
    int64_t deadline = now_ms() + CHECK_TIMEOUT_MS;
    int refused = 0;
    for (int i = 0; i < CHILD_COUNT; i++) {
        if (pids[i] > 0)
            collect(&sv->children[i], pids[i], fds[i], deadline, &v[i]);
        if (v[i].checked && !v[i].ok)
            refused++;
    }
    return refused > 0 ? -1 : 0;
}

/* "edge: static root ...; certd: ..." for the error of the whole. */
static void describe_refusals(supervisor *sv, const sv_verdict v[CHILD_COUNT], char *err,
                              size_t errlen)
{
    err[0] = '\0';
    for (int i = 0; i < CHILD_COUNT; i++) {
        size_t used = strlen(err);
        if (v[i].checked && !v[i].ok)
            snprintf(err + used, errlen - used, "%s%s refused it: %s", used ? "; " : "",
                     sv->children[i].name, v[i].detail);
    }
}

/* Written beside the copy and renamed over it once it passed, so a component starting at any
 * moment reads one whole validated config. Readable by the components' group only: it may hold
 * secrets (eab_hmac_key), like the file it comes from. */
static int write_candidate(supervisor *sv, const char *text, size_t len, const char *path,
                           char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    ssize_t n = fd >= 0 ? write(fd, text, len) : -1;
    bool ok = n == (ssize_t)len && (!sv->drop_privs || fchown(fd, (uid_t)-1, sv->gid) == 0);
    if (fd >= 0 && (fchmod(fd, 0640) < 0 || close(fd) < 0))
        ok = false;
    if (!ok) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
        unlink(path);
        return -1;
    }
    return 0;
}

int verify_adopt_file(supervisor *sv, hearth_config *cfg, sv_verdict v[CHILD_COUNT], char *err,
                      size_t errlen)
{
    memset(v, 0, sizeof(sv_verdict) * CHILD_COUNT);
    size_t len = 0;
    char *text = config_read_file(sv->config_path, &len);
    if (text == NULL) {
        snprintf(err, errlen, "%s: %s", sv->config_path, strerror(errno));
        return -1;
    }
    char candidate[PATH_MAX];
    snprintf(candidate, sizeof(candidate), "%s.new", sv->copy_path);
    int rc = config_load_text(cfg, text, len, sv->config_path, err, errlen);
    if (rc == 0 && (sv_validate(cfg, err, errlen) < 0 ||
                    write_candidate(sv, text, len, candidate, err, errlen) < 0)) {
        config_free(cfg);
        rc = -1;
    }
    free(text);
    if (rc < 0)
        return -1;
    if (verify_components(sv, cfg, candidate, sv->config_path, v) < 0) {
        describe_refusals(sv, v, err, errlen);
        rc = -1;
    } else if (rename(candidate, sv->copy_path) < 0) {
        snprintf(err, errlen, "%s: %s", sv->copy_path, strerror(errno));
        rc = -1;
    }
    if (rc < 0) {
        unlink(candidate);
        config_free(cfg);
    }
    return rc;
}
