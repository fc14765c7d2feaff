/* Signals delivered on a libuv loop: the handler runs as an ordinary loop callback, never in
 * signal context, so it may do anything (Gunicorn's arbiter queues signals the same way). */
#ifndef HEARTH_SIGNALS_H
#define HEARTH_SIGNALS_H

#include <uv.h>

typedef void (*signals_cb)(int signum, void *data);

typedef struct {
    uv_signal_t handles[12];
    int count;
    signals_cb cb;
    void *data;
} signals_set;

/* Watch each signal in the 0-terminated list; cb(signum, data) runs on loop. */
int signals_watch(signals_set *set, uv_loop_t *loop, const int *signums, signals_cb cb,
                  void *data);
/* Stop watching and close the handles (closing completes on the next loop turn). */
void signals_close(signals_set *set);
/* Ignore SIGPIPE: broken connections show up as EPIPE from write instead. */
void signals_ignore_sigpipe(void);
const char *signals_name(int signum);

#endif
