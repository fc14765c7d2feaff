/* Memory given back after a spike of connections. glibc returns freed memory to the system only
 * from the top of the heap; the buffers of thousands of closed connections sit below the few
 * that stay, so a worker kept its peak size for good. Once the open connections have fallen to
 * half their peak, the free pages are handed back with malloc_trim, a moment later so that a
 * mass close is trimmed once. */
#include <malloc.h>

#include "edge/edge.h"

/* Below this many connections a spike leaves too little behind to be worth a trim. */
#define TRIM_MIN_PEAK 64
/* Wait for the rest of a mass close; malloc_trim walks the whole heap. */
#define TRIM_DELAY_MS 500

static int peak;
static uv_timer_t trim_timer;

void edge_memory_init(edge_worker *w)
{
    uv_timer_init(w->loop, &trim_timer);
    uv_unref((uv_handle_t *)&trim_timer);
}

void edge_memory_opened(void)
{
    if (edge_w.conn_count > peak)
        peak = edge_w.conn_count;
}

static void on_trim(uv_timer_t *t)
{
    (void)t;
    malloc_trim(0);
    peak = edge_w.conn_count;
}

void edge_memory_closed(void)
{
    if (peak >= TRIM_MIN_PEAK && edge_w.conn_count <= peak / 2 &&
        !uv_is_active((uv_handle_t *)&trim_timer))
        uv_timer_start(&trim_timer, on_trim, TRIM_DELAY_MS, 0);
}
