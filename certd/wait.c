/* Waiting, the only place certd looks at signals: TERM/INT/HUP/USR1 stay blocked and are taken
 * with sigtimedwait(), so a stop request ends any sleep at once and long transfers can poll for
 * it. USR1 (logrotate) only reopens the log: blocked, it can never kill certd by its default. */
#include "certd/certd.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "shared/log.h"

static sigset_t wait_set;
static volatile sig_atomic_t stop_flag;
static bool hup_flag;

void wait_setup(void)
{
    sigemptyset(&wait_set);
    sigaddset(&wait_set, SIGTERM);
    sigaddset(&wait_set, SIGINT);
    sigaddset(&wait_set, SIGHUP);
    sigaddset(&wait_set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &wait_set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

const sigset_t *wait_sigset(void)
{
    return &wait_set;
}

static void note_signal(int sig)
{
    if (sig == SIGUSR1) {
        if (log_reopen() < 0)
            log_error("SIGUSR1: cannot reopen the log: %s", strerror(errno));
        else
            log_info("SIGUSR1: log reopened");
    } else if (sig == SIGHUP) {
        hup_flag = true;
    } else {
        stop_flag = 1;
    }
}

bool wait_stop_requested(void)
{
    if (stop_flag)
        return true;
    /* A pending TERM/INT is a stop even before anyone waited for it. */
    sigset_t pending;
    if (sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1)) {
        struct timespec zero = {0, 0};
        int sig;
        while ((sig = sigtimedwait(&wait_set, NULL, &zero)) > 0)
            note_signal(sig);
    }
    return stop_flag != 0;
}

bool wait_take_hup(void)
{
    wait_stop_requested(); /* drains pending signals into the flags */
    bool hup = hup_flag;
    hup_flag = false;
    return hup;
}

int64_t wait_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int wait_ms(int64_t ms)
{
    if (wait_stop_requested())
        return SIGTERM;
    int64_t end = wait_now_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        int64_t left = end - wait_now_ms();
        if (left <= 0)
            return 0;
        struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
        int sig = sigtimedwait(&wait_set, NULL, &ts);
        if (sig > 0) {
            note_signal(sig);
            if (sig == SIGUSR1)
                continue; /* nothing to wake up for */
            return sig;
        }
        if (errno != EAGAIN && errno != EINTR)
            return 0;
    }
}

int wait_through_hup(int64_t ms)
{
    int64_t end = wait_now_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        int sig = wait_ms(end - wait_now_ms());
        if (sig == 0)
            return 0;
        if (sig != SIGHUP) /* SIGTERM or SIGINT */
            return -1;
    }
}

uint32_t wait_random(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)wait_now_ms() * 2654435761u ^ (uint32_t)getpid();
    return r;
}
