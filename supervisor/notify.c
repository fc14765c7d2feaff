/* The NOTIFY_SOCKET the children report on (the sd_notify protocol, a datagram socket of our
 * own in run_dir). The sender is known by its pid from SCM_CREDENTIALS, as systemd does it
 * with NotifyAccess=main: only a component's main process speaks for it. */
#include "supervisor/sv.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shared/log.h"

#define NOTIFY_DATAGRAM_MAX 4096

/* Does the newline-separated message carry the exact assignment var (e.g. "READY=1")? */
static bool has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = msg; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, line, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* Value of "NAME=value" in the message, copied to out; false when absent. */
static bool get_value(const char *msg, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *p = msg; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > n && memcmp(p, name, n) == 0 && p[n] == '=') {
            size_t vlen = len - n - 1 < outlen - 1 ? len - n - 1 : outlen - 1;
            memcpy(out, p + n + 1, vlen);
            out[vlen] = '\0';
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

static void handle_message(supervisor *sv, pid_t pid, const char *msg)
{
    sv_child *c = stack_child_by_pid(sv, pid);
    if (c == NULL) {
        log_debug("notify from pid %d, not a component's main process: ignored", (int)pid);
        return;
    }
    if (has_line(msg, "READY=1"))
        child_event_post(c, EV_READY);
    char status[256];
    if (get_value(msg, "STATUS", status, sizeof(status)))
        log_debug("%s: status: %s", c->name, status);
    /* A component asks for another one's reload: certd's "certificate changed" reaches the
     * edge this way, since certd may not use the root-only control socket. */
    /* It reloads the config it runs: the file on disk may hold edits nobody validated yet. A
     * FATAL edge (it exits 2 while it has no certificate) is restarted: the new certificate
     * may be what it lacked. */
    char target[32];
    if (get_value(msg, "HEARTH_RELOAD", target, sizeof(target))) {
        char outcome[128] = "no such component";
        sv_child *t = stack_child_by_name(sv, target);
        if (t != NULL)
            stack_signal_reload(sv, t, outcome, sizeof(outcome));
        log_info("%s asks to reload %s: %s", c->name, target, outcome);
    }
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    supervisor *sv = h->data;
    if (status < 0)
        return;
    for (;;) {
        char data[NOTIFY_DATAGRAM_MAX + 1];
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(struct ucred))];
        } control;
        struct iovec iov = {.iov_base = data, .iov_len = NOTIFY_DATAGRAM_MAX};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control.buf,
                            .msg_controllen = sizeof(control.buf)};
        ssize_t n = recvmsg(sv->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
            return; /* EAGAIN: drained */
        data[n] = '\0';
        pid_t pid = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS) {
                struct ucred cred;
                memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
                pid = cred.pid;
            }
        }
        if (pid > 0)
            handle_message(sv, pid, data);
    }
}

static int bind_notify(supervisor *sv, char *err, size_t errlen)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(sv->notify_path) >= sizeof(addr.sun_path)) {
        snprintf(err, errlen, "%s: path too long for a socket", sv->notify_path);
        return -1;
    }
    strcpy(addr.sun_path, sv->notify_path);
    sv->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sv->notify_fd < 0) {
        snprintf(err, errlen, "notify socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    unlink(sv->notify_path);
    if (setsockopt(sv->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
        bind(sv->notify_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        snprintf(err, errlen, "%s: %s", sv->notify_path, strerror(errno));
        return -1;
    }
    /* Sending needs write permission: the children's group gets it, and since the socket stays
     * ours, they cannot remove it from the (sticky) run_dir. */
    if (sv->drop_privs && chown(sv->notify_path, (uid_t)-1, sv->gid) < 0) {
        snprintf(err, errlen, "chown %s: %s", sv->notify_path, strerror(errno));
        return -1;
    }
    chmod(sv->notify_path, sv->drop_privs ? 0620 : 0600);
    return 0;
}

int notify_open(supervisor *sv, char *err, size_t errlen)
{
    size_t len = strlen(sv->cfg.run_dir) + sizeof("/notify.sock");
    sv->notify_path = malloc(len);
    if (sv->notify_path == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(sv->notify_path, len, "%s/notify.sock", sv->cfg.run_dir);
    if (bind_notify(sv, err, errlen) < 0)
        return -1;
    uv_poll_init(sv->loop, &sv->notify_poll, sv->notify_fd);
    sv->notify_polling = true;
    sv->notify_poll.data = sv;
    uv_poll_start(&sv->notify_poll, UV_READABLE, on_readable);
    return 0;
}

void notify_close(supervisor *sv)
{
    if (sv->notify_path == NULL)
        return;
    if (sv->notify_polling && !uv_is_closing((uv_handle_t *)&sv->notify_poll))
        uv_close((uv_handle_t *)&sv->notify_poll, NULL);
    unlink(sv->notify_path);
}
