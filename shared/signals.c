/* Signals as libuv loop callbacks; see signals.h. */
#include "shared/signals.h"

#include <signal.h>
#include <string.h>

static void on_signal(uv_signal_t *handle, int signum)
{
    signals_set *set = handle->data;
    set->cb(signum, set->data);
}

int signals_watch(signals_set *set, uv_loop_t *loop, const int *signums, signals_cb cb, void *data)
{
    memset(set, 0, sizeof(*set));
    set->cb = cb;
    set->data = data;
    for (; *signums; signums++) {
        if (set->count == (int)(sizeof(set->handles) / sizeof(set->handles[0])))
            return UV_ENOBUFS;
        uv_signal_t *h = &set->handles[set->count];
        int rc = uv_signal_init(loop, h);
        if (rc < 0)
            return rc;
        h->data = set;
        set->count++;
        rc = uv_signal_start(h, on_signal, *signums);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void signals_close(signals_set *set)
{
    for (int i = 0; i < set->count; i++) {
        uv_signal_stop(&set->handles[i]);
        if (!uv_is_closing((uv_handle_t *)&set->handles[i]))
            uv_close((uv_handle_t *)&set->handles[i], NULL);
    }
    set->count = 0;
}

void signals_ignore_sigpipe(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

const char *signals_name(int signum)
{
    switch (signum) {
    case SIGHUP:
        return "SIGHUP";
    case SIGINT:
        return "SIGINT";
    case SIGQUIT:
        return "SIGQUIT";
    case SIGTERM:
        return "SIGTERM";
    case SIGUSR1:
        return "SIGUSR1";
    case SIGUSR2:
        return "SIGUSR2";
    case SIGCHLD:
        return "SIGCHLD";
    case SIGTTIN:
        return "SIGTTIN";
    case SIGTTOU:
        return "SIGTTOU";
    case SIGKILL:
        return "SIGKILL";
    case SIGABRT:
        return "SIGABRT";
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGPIPE:
        return "SIGPIPE";
    case SIGALRM:
        return "SIGALRM";
    default:
        return "signal";
    }
}
