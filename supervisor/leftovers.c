/* What a component's main process leaves behind when it dies: its workers, in its process
 * group. They are stopped the way the component itself would have stopped them. SIGTERM first:
 * each worker closes its listening sockets at once (so the restarted component never shares
 * them with it) and finishes the requests it holds, so a crash of the edge's master costs the
 * site no request in flight. SIGKILL follows once the stop timeout has passed. */
#include "supervisor/sv.h"

#include <errno.h>
#include <signal.h>

#include "shared/log.h"

static void kill_group(sv_child *c)
{
    uv_timer_stop(&c->leftover_timer);
    if (c->leftover_pgid > 0 && kill(-c->leftover_pgid, SIGKILL) == 0)
        log_warn("%s: killed what was still left of process group %d", c->name,
                 (int)c->leftover_pgid);
    c->leftover_pgid = 0;
}

static void on_deadline(uv_timer_t *t)
{
    kill_group(t->data);
}

void leftovers_init(sv_child *c)
{
    uv_timer_init(c->sv->loop, &c->leftover_timer);
    c->leftover_timer.data = c;
    /* a group still draining does not keep a finished supervisor's loop alive */
    uv_unref((uv_handle_t *)&c->leftover_timer);
}

void leftovers_drain(sv_child *c, pid_t pgid)
{
    if (pgid <= 0 || kill(-pgid, SIGTERM) < 0)
        return; /* ESRCH: the main process left nothing behind */
    /* One generation at a time: a crash loop must not pile up draining groups. */
    if (c->leftover_pgid > 0 && c->leftover_pgid != pgid)
        kill_group(c);
    c->leftover_pgid = pgid;
    int64_t ms = c->sv->cfg.supervisor.stop_timeout_ms;
    uv_timer_start(&c->leftover_timer, on_deadline, (uint64_t)ms, 0);
    log_warn("%s: the processes it left behind (process group %d) finish their requests; "
             "SIGKILL in %lld ms if they are still there",
             c->name, (int)pgid, (long long)ms);
}

void leftovers_close(sv_child *c)
{
    kill_group(c);
    uv_close((uv_handle_t *)&c->leftover_timer, NULL);
}
