/* Shared memory between the master and its workers: one slot per worker with its heartbeat
 * and what it is serving right now, so the master can name the route of a worker it kills. */
#ifndef APPSERVER_SCOREBOARD_H
#define APPSERVER_SCOREBOARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SCOREBOARD_TEXT 200

typedef struct {
    _Atomic int64_t beat_ms; /* monotonic ms of the worker's last sign of life */
    _Atomic int busy;        /* inside a handler */
    _Atomic uint64_t requests;
    /* Written by the worker before busy is set, read by the master only once the worker is
     * silent or dead, so the two never race in practice. */
    char route[SCOREBOARD_TEXT];   /* "GET /notes/:id" */
    char request[SCOREBOARD_TEXT]; /* "GET /notes/5?x=1" */
    char boot_error[512];          /* why the worker refused to start */
} worker_slot;

/* An anonymous shared mapping of n zeroed slots, inherited by every fork. NULL on failure. */
worker_slot *scoreboard_create(size_t n);
void scoreboard_destroy(worker_slot *slots, size_t n);
int64_t scoreboard_now_ms(void);

/* Worker -> master messages on the notify pipe; 8 bytes, so each write is atomic. */
enum { NOTIFY_BOOTED = 1, NOTIFY_BOOT_FAILED = 2 };
typedef struct {
    int32_t slot;
    int32_t event;
} worker_notice;

#endif
