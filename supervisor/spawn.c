/* Starting one component: fork, then in the child set up stdio, the inherited listening
 * sockets (LISTEN_FDS, as systemd passes them), the environment and the unprivileged user,
 * and exec. Done by hand rather than with uv_spawn because LISTEN_PID must be the child's
 * own pid, which only the child knows before exec. */
#include "supervisor/sv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/privs.h"

extern char **environ;

#define FIRST_LISTEN_FD 3
#define MAX_LISTEN_FDS 64

/* Everything the child needs, prepared before fork so the child only does system calls. */
typedef struct {
    const char *path;
    char *argv[6];
    char **envp;
    const char *notify_path; /* NOTIFY_SOCKET; NULL for a --check run */
    const char *origin;      /* HEARTH_CONFIG_ORIGIN; NULL: the file given is the original */
    const char *metrics_dir; /* HEARTH_METRICS_DIR; NULL: metrics off */
    char listen_pid[32];     /* "LISTEN_PID=" + digits, completed in the child */
    const int *listen_fds;
    const char *const *listen_names;
    size_t listen_count;
    int out_fd; /* write end of the output pipe */
    int devnull_fd;
    bool drop;
    uid_t uid;
    gid_t gid;
} spawn_plan;

/* Variables that describe our own relation to systemd must not leak into the children. */
static bool env_is_ours(const char *var)
{
    static const char *const names[] = {
        "NOTIFY_SOCKET=", "LISTEN_FDS=",   "LISTEN_PID=",         "LISTEN_FDNAMES=",
        "WATCHDOG_USEC=", "WATCHDOG_PID=", CONFIG_ORIGIN_ENV "=", METRICS_DIR_ENV "="};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strncmp(var, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}

static char *env_pair(const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    char *s = malloc(len);
    if (s != NULL)
        snprintf(s, len, "%s=%s", name, value);
    return s;
}

static void env_free(char **envp, size_t from, size_t to)
{
    if (envp == NULL)
        return;
    for (size_t i = from; i < to; i++)
        free(envp[i]);
    free(envp);
}

/* The inherited environment minus systemd's variables and ours, plus our NOTIFY_SOCKET, the
 * config's origin, the metrics directory and, for the edge, LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID.
 * Strings in
 * [*from, *to) were allocated here; LISTEN_PID points into plan, completed by the child. */
static char **build_env(spawn_plan *plan, size_t *from, size_t *to)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **envp = calloc(n + 7, sizeof(*envp));
    if (envp == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_is_ours(environ[i]))
            envp[k++] = environ[i];
    *from = k;
    if (plan->notify_path != NULL)
        envp[k++] = env_pair("NOTIFY_SOCKET", plan->notify_path);
    if (plan->origin != NULL)
        envp[k++] = env_pair(CONFIG_ORIGIN_ENV, plan->origin);
    if (plan->metrics_dir != NULL)
        envp[k++] = env_pair(METRICS_DIR_ENV, plan->metrics_dir);
    if (plan->listen_count > 0) {
        char count[24], names[256] = "";
        snprintf(count, sizeof(count), "%zu", plan->listen_count);
        for (size_t i = 0; i < plan->listen_count; i++) {
            if (i > 0)
                strncat(names, ":", sizeof(names) - strlen(names) - 1);
            strncat(names, plan->listen_names[i], sizeof(names) - strlen(names) - 1);
        }
        envp[k++] = env_pair("LISTEN_FDS", count);
        envp[k++] = env_pair("LISTEN_FDNAMES", names);
    }
    *to = k;
    for (size_t i = *from; i < k; i++) {
        if (envp[i] == NULL) {
            env_free(envp, *from, k);
            return NULL;
        }
    }
    if (plan->listen_count > 0)
        envp[k++] = plan->listen_pid;
    return envp;
}

static void write_str(int fd, const char *s)
{
    ssize_t r = write(fd, s, strlen(s));
    (void)r;
}

/* Async-signal-safe decimal formatting for LISTEN_PID. */
static void format_pid(char *out, pid_t pid)
{
    char digits[24];
    int n = 0;
    unsigned long v = (unsigned long)pid;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0)
        *out++ = digits[--n];
    *out = '\0';
}

/* Move the listening sockets to 3, 4, ... without clobbering one another: first above the
 * target range, then into place (dup2 also clears close-on-exec). */
static int place_listen_fds(const spawn_plan *plan)
{
    int top = FIRST_LISTEN_FD + (int)plan->listen_count;
    int tmp[MAX_LISTEN_FDS];
    if (plan->listen_count > MAX_LISTEN_FDS)
        return -1;
    for (size_t i = 0; i < plan->listen_count; i++) {
        tmp[i] = fcntl(plan->listen_fds[i], F_DUPFD, top);
        if (tmp[i] < 0)
            return -1;
    }
    for (size_t i = 0; i < plan->listen_count; i++) {
        if (dup2(tmp[i], FIRST_LISTEN_FD + (int)i) < 0)
            return -1;
        close(tmp[i]);
    }
    return 0;
}

static void reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* exec keeps ignored signals ignored; the supervisor ignores SIGPIPE, a child must not. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &dfl, NULL);
}

static void fail_in_child(const char *name, const char *what, const char *detail)
{
    write_str(STDERR_FILENO, name);
    write_str(STDERR_FILENO, ": ");
    write_str(STDERR_FILENO, what);
    write_str(STDERR_FILENO, ": ");
    write_str(STDERR_FILENO, detail);
    write_str(STDERR_FILENO, "\n");
    _exit(127);
}

static void exec_in_child(spawn_plan *plan, const char *name)
{
    reset_signals();
    /* Its own session: a Ctrl-C on the supervisor's terminal reaches the supervisor, which
     * then stops the children in order, instead of hitting everyone at once. */
    setsid();
    if (dup2(plan->devnull_fd, STDIN_FILENO) < 0 || dup2(plan->out_fd, STDOUT_FILENO) < 0 ||
        dup2(plan->out_fd, STDERR_FILENO) < 0)
        _exit(127);
    if (place_listen_fds(plan) < 0)
        fail_in_child(name, "passing listening sockets", strerror(errno));
    /* Whatever the supervisor inherited without close-on-exec stops here. */
    close_range(FIRST_LISTEN_FD + (unsigned)plan->listen_count, ~0U, 0);
    if (plan->listen_count > 0)
        format_pid(plan->listen_pid + strlen("LISTEN_PID="), getpid());
    /* Under systemd the supervisor holds CAP_NET_BIND_SERVICE as an ambient capability to bind
     * :80/:443; the components get the sockets instead and need no capability at all. */
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (plan->drop) {
        char err[256];
        if (privs_drop(plan->uid, plan->gid, err, sizeof(err)) < 0)
            fail_in_child(name, "dropping privileges", err);
    }
    execve(plan->path, plan->argv, plan->envp);
    fail_in_child(name, plan->path, strerror(errno));
}

/* `edge --config FILE`, `appserver -c FILE`, `certd --daemon -c FILE`; with check, each one's
 * --check instead of running. */
static void plan_argv(sv_child *c, const char *config, bool check, spawn_plan *plan)
{
    int i = 0;
    plan->argv[i++] = c->path;
    if (check)
        plan->argv[i++] = "--check";
    if (strcmp(c->name, "edge") == 0) {
        plan->argv[i++] = "--config";
    } else if (strcmp(c->name, "certd") == 0) {
        if (!check)
            plan->argv[i++] = "--daemon";
        plan->argv[i++] = "-c";
    } else {
        plan->argv[i++] = "-c";
    }
    plan->argv[i++] = (char *)config;
    plan->argv[i] = NULL;
}

/* Everything but the environment: argv, the component's sockets, stdio, the user. A component
 * runs the supervisor's copy of the last validated config, never the file as it is now. */
static void plan_for(supervisor *sv, sv_child *c, spawn_plan *plan, int *fds, const char **names)
{
    memset(plan, 0, sizeof(*plan));
    plan->path = c->path;
    plan_argv(c, sv->copy_path, false, plan);
    plan->notify_path = sv->notify_path;
    plan->origin = sv->config_path;
    plan->metrics_dir = sv->metrics_dir;
    snprintf(plan->listen_pid, sizeof(plan->listen_pid), "LISTEN_PID=");
    for (size_t i = 0; i < sv->listener_count && plan->listen_count < MAX_LISTEN_FDS; i++) {
        if (sv->listeners[i].owner == c->id) {
            names[plan->listen_count] = sv->listeners[i].name;
            fds[plan->listen_count++] = sv->listeners[i].fd;
        }
    }
    plan->listen_names = names;
    plan->listen_fds = fds;
    plan->devnull_fd = sv->devnull_fd;
    plan->drop = sv->drop_privs;
    plan->uid = sv->uid;
    plan->gid = sv->gid;
}

/* Fork and exec the plan; the child's stdout and stderr go to the read end left in *out_fd. */
static pid_t run_plan(spawn_plan *plan, const char *name, int *out_fd)
{
    size_t from = 0, to = 0;
    plan->envp = build_env(plan, &from, &to);
    int pipefd[2];
    if (plan->envp == NULL || pipe2(pipefd, O_CLOEXEC) < 0) {
        log_error("%s: cannot prepare to start: %s", name, strerror(errno));
        env_free(plan->envp, from, to);
        return -1;
    }
    plan->out_fd = pipefd[1];
    pid_t pid = fork();
    if (pid == 0)
        exec_in_child(plan, name);
    int saved = errno;
    close(pipefd[1]);
    env_free(plan->envp, from, to);
    if (pid < 0) {
        close(pipefd[0]);
        log_error("%s: fork: %s", name, strerror(saved));
        return -1;
    }
    *out_fd = pipefd[0];
    return pid;
}

pid_t spawn_child(supervisor *sv, sv_child *c)
{
    spawn_plan plan;
    int fds[MAX_LISTEN_FDS];
    const char *names[MAX_LISTEN_FDS];
    plan_for(sv, c, &plan, fds, names);
    int out_fd;
    pid_t pid = run_plan(&plan, c->name, &out_fd);
    if (pid > 0 && output_attach(sv->loop, out_fd, c->name) < 0)
        close(out_fd);
    return pid;
}

pid_t spawn_check(supervisor *sv, sv_child *c, const char *config, const char *origin, int *out_fd)
{
    spawn_plan plan;
    memset(&plan, 0, sizeof(plan));
    plan.path = c->path;
    plan_argv(c, config, true, &plan);
    plan.origin = origin;
    plan.devnull_fd = sv->devnull_fd;
    plan.drop = sv->drop_privs;
    plan.uid = sv->uid;
    plan.gid = sv->gid;
    return run_plan(&plan, c->name, out_fd);
}
