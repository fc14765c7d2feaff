/* The scoreboard mapping and the clock both sides of it agree on. */
#include "appserver/scoreboard.h"

#include <sys/mman.h>
#include <time.h>

worker_slot *scoreboard_create(size_t n)
{
    void *p = mmap(NULL, n * sizeof(worker_slot), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void scoreboard_destroy(worker_slot *slots, size_t n)
{
    if (slots)
        munmap(slots, n * sizeof(worker_slot));
}

int64_t scoreboard_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
